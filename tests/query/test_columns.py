"""Columns of run listings: parsing ``--columns``, defaults, table cells and CSV values."""

from __future__ import annotations

import pytest

from gitml.errors import InvalidInput
from gitml.format.records import MetricValue, Run, Source
from gitml.query.columns import (
    Column,
    export_columns,
    metric_keys_in,
    parse_columns,
    table_columns,
)

T0 = 1_700_000_000_000


def make_run(n: int, **fields: object) -> Run:
    base: dict[str, object] = {
        "id": f"{n:032x}",
        "experiment_id": "abc",
        "name": f"run-{n}",
        "status": "FINISHED",
        "start_time": T0,
        "user": "ana",
    }
    base.update(fields)
    return Run.model_validate(base)


def metric(value: float) -> MetricValue:
    return MetricValue(value=value, step=0, timestamp=T0)


def test_parse_columns_prefixes_aliases_and_backticks() -> None:
    assert parse_columns("params.alpha, metric.rmse,tag.team") == [
        Column("params", "alpha"),
        Column("metrics", "rmse"),
        Column("tags", "team"),
    ]
    assert parse_columns("name,attributes.status,start,user_id,experiment") == [
        Column("attribute", "run_name"),
        Column("attribute", "status"),
        Column("attribute", "start_time"),
        Column("attribute", "user"),
        Column("attribute", "experiment"),
    ]
    assert parse_columns("metrics.`val.loss`,params.`a,b`,`metrics.x y`") == [
        Column("metrics", "val.loss"),
        Column("params", "a,b"),
        Column("metrics", "x y"),
    ]
    assert parse_columns("tags.mlflow.runName") == [Column("tags", "mlflow.runName")]
    assert parse_columns("status,,status") == [Column("attribute", "status")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour", "unknown column 'colour'"),
        ("metrics.", "names no key"),
        ("params.`a", "backtick is not closed"),
        (" , ", "names no column"),
    ],
)
def test_bad_columns(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_columns(text)


def test_metric_keys_in_filters_and_orders() -> None:
    assert metric_keys_in("metrics.rmse < 1 and metric.`val loss` > 2") == ["rmse", "val loss"]
    assert metric_keys_in('metrics."f1" DESC') == ["f1"]
    assert metric_keys_in("params.metrics.x = '1' and tags.t = 'metrics.y'") == []


def test_table_columns_prefer_named_metrics_then_common_ones() -> None:
    runs = [
        make_run(1, metrics={"a": metric(1), "b": metric(2), "z": metric(0)}),
        make_run(2, metrics={"b": metric(1), "c": metric(3), "z": metric(0)}),
        make_run(3, metrics={"z": metric(0)}),
    ]
    names = [c.name for c in table_columns(runs)]
    assert names == ["run_id", "run_name", "status", "experiment", "start_time", "metrics.z",
                     "metrics.b", "metrics.a"]  # fmt: skip
    hinted = table_columns(runs, ["metrics.c > 1", "metrics.a DESC"])
    assert [c.name for c in hinted][5:] == ["metrics.c", "metrics.a", "metrics.z"]
    assert [c.name for c in table_columns([])][5:] == []


def test_cells_and_csv_values() -> None:
    run = make_run(
        7,
        end_time=T0 + 61_000,
        params={"long": "x" * 100, "multi": "two\nlines"},
        metrics={"rmse": metric(0.123456789)},
        source=Source(commit="ab" * 20, branch="main"),
        parent_run_id="f" * 32,
    )
    names = {"abc": "churn"}

    def cell(text: str) -> str:
        return parse_columns(text)[0].cell(run, names)

    def csv(text: str) -> str:
        return parse_columns(text)[0].csv(run, names)

    assert cell("run_id") == run.id[:12] and csv("run_id") == run.id
    assert cell("experiment") == "churn" and csv("experiment_id") == "abc"
    assert cell("start_time") == "2023-11-14 22:13:20"
    assert csv("end_time") == "2023-11-14T22:14:21.000+00:00"
    assert cell("metrics.rmse") == "0.123457" and csv("metrics.rmse") == "0.123456789"
    assert cell("params.long") == "x" * 39 + "…" and csv("params.long") == "x" * 100
    assert cell("params.multi") == "two lines"
    assert cell("params.missing") == "" and csv("metrics.missing") == ""
    assert cell("commit") == "ab" * 6 and csv("branch") == "main"
    assert cell("parent") == "f" * 12
    assert csv("artifact_uri") == f"runs:/{run.id}/"
    assert csv("tags.mlflow.runName") == "run-7"
    assert cell("experiment") == "churn"
    assert parse_columns("experiment")[0].cell(run, {}) == "abc"  # unknown experiment


def test_export_columns_follow_the_dataframe_layout() -> None:
    runs = [
        make_run(1, metrics={"b": metric(1)}, params={"p": "1"}),
        make_run(2, metrics={"a": metric(1)}, tags={"t": "x"}),
    ]
    names = [c.name for c in export_columns(runs)]
    assert names == [
        "run_id",
        "experiment_id",
        "status",
        "artifact_uri",
        "start_time",
        "end_time",
        "metrics.a",
        "metrics.b",
        "params.p",
        "tags.mlflow.runName",
        "tags.mlflow.user",
        "tags.t",
    ]
