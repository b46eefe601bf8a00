"""The values users pass to ``Client.log_batch`` and get back from metric history.

Named and shaped as MLflow's ``mlflow.entities`` so code written for
``MlflowClient.log_batch`` reads the same.
"""

from __future__ import annotations

from dataclasses import dataclass


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
