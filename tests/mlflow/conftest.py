"""The MLflow client workload (testing.mlflow_workload) and MLflow's own answers to it."""

from __future__ import annotations

from typing import Any

import pytest

from testing.mlflow_server import mlflow_env
from testing.mlflow_workload import run_workload


@pytest.fixture(scope="session")
def mlflow_reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What MLflow itself answers to the workload (its own client on its file store)."""
    work = tmp_path_factory.mktemp("mlflow-reference")
    env = mlflow_env(
        work / "home",
        MLFLOW_TRACKING_URI=(work / "mlruns").as_uri(),
        # MLflow 3.17 keeps the file store behind this switch; its SQLite store runs
        # dozens of schema migrations first (minutes on a loaded machine).
        MLFLOW_ALLOW_FILE_STORE="true",
    )
    answers = run_workload(work, env)
    answers.pop("seconds")
    return answers
