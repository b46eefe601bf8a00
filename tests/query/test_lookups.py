"""Child runs and per-experiment counts from the index."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import gitml
from gitml.query.lookups import (
    RUN_FIELDS,
    Activity,
    RunSummary,
    experiment_activity,
    run_counts,
    run_summaries,
    runs_window,
)
from gitml.tracking.entities import Metric, Param
from testing.git import git

T0 = 1_700_000_000_000


def test_child_runs_newest_first_and_by_view(repo: Path) -> None:
    client = gitml.Client()
    parent = client.create_run(run_name="parent", start_time=T0)
    older = client.create_run(run_name="older", start_time=T0 + 1, parent_run_id=parent.id)
    newer = client.create_run(run_name="newer", start_time=T0 + 2, parent_run_id=parent.id)
    grandchild = client.create_run(start_time=T0 + 3, parent_run_id=newer.id)
    client.create_run(run_name="unrelated", start_time=T0 + 4)

    assert [r.id for r in client.get_child_runs(parent.id)] == [newer.id, older.id]
    assert [r.id for r in client.get_child_runs(newer.id)] == [grandchild.id]
    assert client.get_child_runs(grandchild.id) == []

    client.delete_run(older.id)
    assert [r.id for r in client.get_child_runs(parent.id)] == [newer.id]
    assert [r.id for r in client.get_child_runs(parent.id, "DELETED_ONLY")] == [older.id]
    assert len(client.get_child_runs(parent.id, "ALL")) == 2
    with pytest.raises(gitml.InvalidInput, match="run_view_type"):
        client.get_child_runs(parent.id, "SOME")


def test_fluent_nested_runs_are_children(repo: Path) -> None:
    with gitml.start_run() as outer, gitml.start_run(nested=True) as inner:
        pass
    children = gitml.Client().get_child_runs(outer.info.run_id)
    assert [r.id for r in children] == [inner.info.run_id]


def test_run_counts_by_experiment_and_stage(repo: Path) -> None:
    client = gitml.Client()
    runs = [client.create_run("a") for _ in range(3)] + [client.create_run("b")]
    client.delete_run(runs[0].id)
    a = client.get_or_create_experiment_id("a")
    b = client.get_or_create_experiment_id("b")
    assert run_counts(client.index) == {
        a: {"active": 2, "deleted": 1},
        b: {"active": 1, "deleted": 0},
    }
    # A run arriving from elsewhere (git update-ref) is counted at the next call.
    git(
        repo,
        "update-ref",
        "refs/gitml/runs/" + "e" * 32,
        git(repo, "rev-parse", f"refs/gitml/runs/{runs[3].id}").strip(),
    )
    assert run_counts(client.index)[b]["active"] == 1  # a copy with a mismatched id is broken
    assert len(client.index.broken()) == 1


def test_experiment_activity_counts_runs_and_their_latest_time(repo: Path) -> None:
    client = gitml.Client()
    first = client.create_run("a", start_time=T0)
    second = client.create_run("a", start_time=T0 + 10)
    client.set_terminated(first.id, "FINISHED", T0 + 50)
    client.delete_run(second.id)
    client.create_run("b", start_time=T0 + 5)
    client.get_or_create_experiment_id("empty")
    assert experiment_activity(client.index) == {
        client.get_or_create_experiment_id("a"): Activity(active=1, deleted=1, last=T0 + 50),
        client.get_or_create_experiment_id("b"): Activity(active=1, deleted=0, last=T0 + 5),
    }


def test_run_summaries_of_a_parent_and_of_a_code_commit(repo: Path) -> None:
    client = gitml.Client()
    parent = client.create_run(run_name="parent", start_time=T0)
    older = client.create_run(run_name="older", start_time=T0 + 1, parent_run_id=parent.id)
    newer = client.create_run(run_name="newer", start_time=T0 + 2, parent_run_id=parent.id)
    client.delete_run(older.id)
    children = run_summaries(client.index, parent_run_id=parent.id)
    assert children == [RunSummary(newer.id, "newer", "RUNNING", T0 + 2, False)]
    commit = client.get_run(parent.id).source.commit
    assert commit is not None
    made = run_summaries(client.index, source_commit=commit, limit=2)
    assert [r.id for r in made] == [newer.id, parent.id]


def test_runs_window_is_the_rows_and_columns_asked_for(repo: Path) -> None:
    client = gitml.Client()
    ids = []
    for n in range(5):
        run = client.create_run("a", start_time=T0 + n)
        client.log_batch(
            run.id, metrics=[Metric("loss", n / 10, T0, 0)], params=[Param("n", str(n))]
        )
        ids.append(run.id)
    window = runs_window(
        client.index,
        experiment_ids=[client.get_or_create_experiment_id("a")],
        filter_string="metrics.loss >= 0.1",
        order_by=["metrics.loss DESC"],
        run_view_type="ACTIVE_ONLY",
        columns=None,
        offset=1,
        limit=2,
        with_keys=True,
    )
    assert window.total == 4
    assert window.fields == [*RUN_FIELDS, "metrics.loss", "params.n"]
    assert [row[0] for row in window.rows] == [ids[3], ids[2]]
    assert [row[-2:] for row in window.rows] == [[0.3, "3"], [0.2, "2"]]
    assert window.keys is not None
    assert (window.keys["params"], window.keys["metrics"]) == (["n"], ["loss"])
    with pytest.raises(gitml.InvalidInput, match=re.escape("column 'loss' is not 'params.<key>'")):
        runs_window(
            client.index,
            experiment_ids=None,
            filter_string="",
            order_by=[],
            run_view_type="ALL",
            columns=["loss"],
            offset=0,
            limit=1,
        )
