"""A forked child neither repeats the parent's buffered values nor loses its own."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import gitml


def _child_logs() -> None:
    gitml.log_metric("child", float(os.getpid()), step=1)
    gitml.get_run(gitml.last_active_run_id() or "")  # flushes in the child


def test_fork_keeps_each_point_once(repo: Path) -> None:
    with gitml.start_run() as run:
        gitml.log_metric("parent", 1.0, step=0)  # buffered, and the run not yet committed
        child = multiprocessing.get_context("fork").Process(target=_child_logs)
        child.start()
        child.join(timeout=60)
        assert child.exitcode == 0
        gitml.log_metric("parent", 2.0, step=1)
    client = gitml.Client()
    assert [p.value for p in client.get_metric_history(run.run_id, "parent")] == [1.0, 2.0]
    assert [p.value for p in client.get_metric_history(run.run_id, "child")] == [
        float(child.pid or 0)
    ]
    assert client.get_run(run.run_id).status == "FINISHED"
    assert not list((repo / ".git" / "gitml" / "journal").glob("*.log"))
