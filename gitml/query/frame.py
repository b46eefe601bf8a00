"""Runs as a pandas DataFrame, laid out as ``mlflow.search_runs`` lays them out.

Columns: ``run_id``, ``experiment_id``, ``status``, ``artifact_uri``,
``start_time`` and ``end_time`` (UTC datetimes; NaT while a run is going),
then ``metrics.<key>`` (float, NaN where a run lacks the metric),
``params.<key>`` and ``tags.<key>`` (str, None where missing). Keys are sorted,
so two calls give the same columns in the same order.

MLflow keeps the run name, user, parent and source commit in system tags
(``mlflow.runName``, ``mlflow.user``, ``mlflow.parentRunId``,
``mlflow.source.git.commit``) and code written against its DataFrames reads
them there, so they are filled from the record unless the run has such a tag
itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from gitml.errors import InvalidInput
from gitml.format.records import Run
from gitml.format.records import artifact_uri as artifact_uri
from gitml.format.records import system_tags as system_tags

INFO_COLUMNS = ("run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time")


def runs_to_frame(runs: Iterable[Run]) -> Any:
    """A ``pandas.DataFrame`` of ``runs``, one row each, in the order given."""
    try:
        import pandas as pd
    except ImportError:
        raise InvalidInput(
            "a DataFrame needs pandas, which is not installed: pip install 'gitml[pandas]'"
        ) from None
    rows = list(runs)
    info: dict[str, list[Any]] = {name: [] for name in INFO_COLUMNS}
    metric_keys: set[str] = set()
    param_keys: set[str] = set()
    tag_keys: set[str] = set()
    all_tags = []
    for run in rows:
        info["run_id"].append(run.id)
        info["experiment_id"].append(run.experiment_id)
        info["status"].append(run.status)
        info["artifact_uri"].append(artifact_uri(run))
        info["start_time"].append(run.start_time)
        info["end_time"].append(run.end_time)
        tags = {**system_tags(run), **run.tags}
        all_tags.append(tags)
        metric_keys.update(run.metrics)
        param_keys.update(run.params)
        tag_keys.update(tags)
    data: dict[str, Any] = {
        "run_id": pd.Series(info["run_id"], dtype=object),
        "experiment_id": pd.Series(info["experiment_id"], dtype=object),
        "status": pd.Series(info["status"], dtype=object),
        "artifact_uri": pd.Series(info["artifact_uri"], dtype=object),
        "start_time": pd.to_datetime(
            pd.Series(info["start_time"], dtype="float64"), unit="ms", utc=True
        ),
        "end_time": pd.to_datetime(
            pd.Series(info["end_time"], dtype="float64"), unit="ms", utc=True
        ),
    }
    for key in sorted(metric_keys):
        data[f"metrics.{key}"] = pd.Series([_metric(run, key) for run in rows], dtype="float64")
    for key in sorted(param_keys):
        data[f"params.{key}"] = pd.Series([run.params.get(key) for run in rows], dtype=object)
    for key in sorted(tag_keys):
        data[f"tags.{key}"] = pd.Series([tags.get(key) for tags in all_tags], dtype=object)
    return pd.DataFrame(data)


def _metric(run: Run, key: str) -> float:
    found = run.metrics.get(key)
    return math.nan if found is None else found.value
