"""The values users pass to ``Client.log_batch`` and get back from metric history.

Named and shaped as MLflow's ``mlflow.entities`` so code written for
``MlflowClient.log_batch`` reads the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gitml.format.records import RunData as RunData
from gitml.format.records import RunInfo as RunInfo

# JSON has no NaN or infinities, and null cannot tell the three apart: over
# HTTP, metric values that are not finite travel as MLflow's REST API writes them.
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def metric_to_json(value: float) -> float | str:
    """A metric value as JSON can carry it: a number, or "NaN", "Infinity", "-Infinity"."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def metric_from_json(value: Any) -> Any:
    """The float ``metric_to_json`` wrote; anything else unchanged, for validation to refuse."""
    return NON_FINITE.get(value, value) if isinstance(value, str) else value


@dataclass(frozen=True)
class Metric:
    key: str
    value: float
    timestamp: int
    step: int = 0


@dataclass(frozen=True)
class Param:
    key: str
    value: str


@dataclass(frozen=True)
class RunTag:
    key: str
    value: str
