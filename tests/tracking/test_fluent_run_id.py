"""``start_run`` attaches to the run named by ``GITML_RUN_ID`` (``gitml run`` sets it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import gitml
from gitml.tracking.client import Client


def test_start_run_attaches_to_gitml_run_id_once(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = Client().create_run(None, run_name="from-gitml-run")
    monkeypatch.setenv("GITML_RUN_ID", created.id)
    with gitml.start_run() as run:
        assert run.run_id == created.id
        gitml.log_metric("loss", 0.5)
    assert "GITML_RUN_ID" not in os.environ  # used once, as MLflow uses MLFLOW_RUN_ID
    got = gitml.get_run(created.id)
    assert (got.status, got.name, got.metrics["loss"].value) == ("FINISHED", "from-gitml-run", 0.5)
    with gitml.start_run() as later:
        assert later.run_id != created.id


def test_an_explicit_run_id_wins_over_the_variable(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = Client()
    named, other = client.create_run(None), client.create_run(None)
    monkeypatch.setenv("GITML_RUN_ID", other.id)
    with gitml.start_run(run_id=named.id) as run:
        assert run.run_id == named.id
    assert os.environ["GITML_RUN_ID"] == other.id


def test_logging_without_start_run_also_attaches(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = Client().create_run(None)
    monkeypatch.setenv("GITML_RUN_ID", created.id)
    gitml.log_param("alpha", 1)
    gitml.end_run()
    assert gitml.get_run(created.id).params == {"alpha": "1"}
