"""``run.info`` and ``run.data``, checked against what MLflow's own ``Run`` gives for the
same values logged with ``MlflowClient`` into a ``file:`` store."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

import gitml
from gitml.tracking.entities import RunData, RunInfo
from testing.mlflow_ref import mlflow_answer
from testing.tracking_server import tracking_server

START, END = 1_700_000_000_000, 1_700_000_001_000
POINTS = [("loss", 0.5, START + 100, 0), ("loss", 0.25, START + 200, 1), ("acc", 0.9, START, 0)]

MLFLOW_RUN = """
import json
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

client = MlflowClient()
exp = client.create_experiment("views")
run = client.create_run(exp, run_name="base", start_time=%(start)d, tags={"team": "growth"})
run_id = run.info.run_id
client.log_batch(
    run_id,
    metrics=[Metric(*p) for p in %(points)r],
    params=[Param("lr", "0.01")],
    tags=[RunTag("k", "v")],
)
running = client.get_run(run_id)
client.set_terminated(run_id, "FINISHED", end_time=%(end)d)
done = client.get_run(run_id)
info = {f: getattr(done.info, f) for f in %(fields)r}
types = {f: type(getattr(done.info, f)).__name__ for f in %(fields)r}
print(json.dumps({
    "info": info,
    "types": types,
    "running_end_time": running.info.end_time,
    "running_status": running.info.status,
    "params": done.data.params,
    "metrics": done.data.metrics,
    "metric_types": sorted({type(v).__name__ for v in done.data.metrics.values()}),
    "tags": done.data.tags,
}))
"""

INFO_FIELDS = [
    "run_id",
    "experiment_id",
    "run_name",
    "status",
    "start_time",
    "end_time",
    "lifecycle_stage",
    "artifact_uri",
    "user_id",
]


def log_the_same(client: gitml.Client) -> tuple[str, RunInfo]:
    """The values MLFLOW_RUN logs, logged with gitml; the run's id and its info while running."""
    run = client.create_run("views", run_name="base", start_time=START, tags={"team": "growth"})
    client.log_batch(
        run.id,
        metrics=[gitml.Metric(*p) for p in POINTS],
        params={"lr": "0.01"},
        tags={"k": "v"},
    )
    running = client.get_run(run.id).info
    client.set_terminated(run.id, "FINISHED", end_time=END)
    return run.id, running


@pytest.mark.slow
def test_info_and_data_mean_what_mlflows_run_says(repo: Path, tmp_path: Path) -> None:
    script = MLFLOW_RUN % {"start": START, "end": END, "points": POINTS, "fields": INFO_FIELDS}
    theirs: dict[str, Any] = mlflow_answer(script, tmp_path)
    client = gitml.Client()
    run_id, running = log_the_same(client)
    run = client.get_run(run_id)
    info, data = run.info, run.data

    assert set(asdict(info)) == set(INFO_FIELDS)
    # The same value where the meaning is the same.
    for field in ("run_name", "status", "start_time", "end_time", "lifecycle_stage"):
        assert getattr(info, field) == theirs["info"][field], field
    assert (running.end_time, running.status) == (
        theirs["running_end_time"],
        theirs["running_status"],
    )
    # The same type everywhere; ids, user and artifact location are each tool's own.
    for field in INFO_FIELDS:
        assert type(getattr(info, field)).__name__ == theirs["types"][field], field
    assert info.run_id == run_id and info.experiment_id == run.experiment_id
    assert info.artifact_uri == f"runs:/{run_id}/"
    assert info.user_id == run.user

    assert data.params == theirs["params"] == {"lr": "0.01"}
    assert data.metrics == theirs["metrics"] == {"loss": 0.25, "acc": 0.9}
    assert sorted({type(v).__name__ for v in data.metrics.values()}) == theirs["metric_types"]
    # MLflow's client run has mlflow.runName beside the run's own tags; gitml also fills
    # the system tags MLflow's fluent API sets (user, source commit, branch).
    assert {k: v for k, v in data.tags.items() if k in theirs["tags"]} == theirs["tags"]
    assert set(data.tags) - set(theirs["tags"]) == {
        "mlflow.user",
        "mlflow.source.git.commit",
        "mlflow.source.git.branch",
    }
    assert data.tags["mlflow.source.git.commit"] == run.source.commit


@pytest.mark.slow
def test_the_rest_client_gives_the_same_views(repo: Path) -> None:
    with tracking_server(repo) as server:
        remote = gitml.Client(server.url)
        run_id, _ = log_the_same(remote)
        over_http = remote.get_run(run_id)
        remote.close()
    local = gitml.Client(str(repo)).get_run(run_id)
    assert isinstance(over_http.info, RunInfo) and isinstance(over_http.data, RunData)
    assert over_http.info == local.info
    assert over_http.data == local.data


def test_the_fluent_active_run_has_the_views(repo: Path) -> None:
    with gitml.start_run(run_name="fluent") as active:
        gitml.log_param("lr", 0.1)
        gitml.log_metric("loss", 2.0)
        assert active.info.run_id == active.run_id
        assert active.info.run_name == "fluent" and active.info.status == "RUNNING"
        assert active.data.params == {"lr": "0.1"} and active.data.metrics == {"loss": 2.0}
    assert gitml.Client().get_run(active.run_id).info.status == "FINISHED"
