"""``runs_to_frame``: MLflow's DataFrame layout for ``search_runs(output_format="pandas")``."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd
import pytest

import gitml
from gitml.query.frame import runs_to_frame

T0 = 1_700_000_000_000


def test_layout_types_and_missing_values(repo: Path) -> None:
    client = gitml.Client()
    parent = client.create_run("churn", run_name="parent", start_time=T0)
    client.log_batch(
        parent.id,
        metrics=[gitml.Metric("rmse", 0.5, T0, 0)],
        params={"alpha": "0.1"},
        tags={"team": "growth"},
    )
    client.set_terminated(parent.id, end_time=T0 + 1500)
    child = client.create_run(
        "churn", run_name="child", start_time=T0 + 10, parent_run_id=parent.id
    )
    client.log_batch(child.id, metrics=[gitml.Metric("acc", float("nan"), T0, 0)])
    runs = [client.get_run(parent.id), client.get_run(child.id)]

    frame = runs_to_frame(runs)
    assert list(frame.columns[:6]) == [
        "run_id",
        "experiment_id",
        "status",
        "artifact_uri",
        "start_time",
        "end_time",
    ]
    assert list(frame.columns[6:9]) == ["metrics.acc", "metrics.rmse", "params.alpha"]
    assert list(frame["run_id"]) == [parent.id, child.id]
    assert list(frame["status"]) == ["FINISHED", "RUNNING"]
    assert frame["artifact_uri"][0] == f"runs:/{parent.id}/"
    assert str(frame["start_time"].dtype).startswith("datetime64") and "UTC" in str(
        frame["start_time"].dtype
    )
    assert frame["start_time"][0] == pd.Timestamp(T0, unit="ms", tz="UTC")
    assert frame["end_time"][0] == pd.Timestamp(T0 + 1500, unit="ms", tz="UTC")
    assert pd.isna(frame["end_time"][1])
    assert frame["metrics.rmse"].dtype == "float64"
    assert frame["metrics.rmse"][0] == 0.5 and math.isnan(frame["metrics.rmse"][1])
    assert math.isnan(frame["metrics.acc"][1])  # a logged NaN stays NaN
    assert list(frame["params.alpha"]) == ["0.1", None]
    assert list(frame["tags.team"]) == ["growth", None]
    # MLflow's system tags, which code written for MLflow reads
    assert list(frame["tags.mlflow.runName"]) == ["parent", "child"]
    assert list(frame["tags.mlflow.parentRunId"]) == [None, parent.id]
    assert frame["tags.mlflow.user"][0] == parent.user
    assert list(frame["tags.mlflow.source.git.branch"]) == ["main", "main"]


def test_a_tag_of_the_run_wins_over_the_system_tag(repo: Path) -> None:
    client = gitml.Client()
    run = client.create_run(run_name="mine", tags={"mlflow.runName": "theirs"})
    frame = runs_to_frame([client.get_run(run.id)])
    assert frame["tags.mlflow.runName"][0] == "theirs"


def test_no_runs_is_an_empty_frame_with_the_attribute_columns() -> None:
    frame = runs_to_frame([])
    assert len(frame) == 0
    assert list(frame.columns) == [
        "run_id",
        "experiment_id",
        "status",
        "artifact_uri",
        "start_time",
        "end_time",
    ]


def test_without_pandas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(gitml.InvalidInput, match=r"pip install 'gitml\[pandas\]'"):
        runs_to_frame([])


def test_fluent_search_runs_as_pandas(repo: Path) -> None:
    client = gitml.Client()
    for i, rmse in enumerate([0.3, 0.9, 0.6]):
        run = client.create_run("churn", run_name=f"r{i}", start_time=T0 + i)
        client.log_batch(run.id, metrics=[gitml.Metric("rmse", rmse, T0, 0)])
    frame = gitml.search_runs(
        experiment_names=["churn"],
        filter_string="metrics.rmse < 0.8",
        order_by=["metrics.rmse DESC"],
        output_format="pandas",
    )
    assert list(frame["tags.mlflow.runName"]) == ["r2", "r0"]
    assert list(frame["metrics.rmse"]) == [0.6, 0.3]
