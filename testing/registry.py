"""Runs with a real logged model, ready to register."""

from __future__ import annotations

from typing import Any

import gitml
import gitml.sklearn

from .models import iris_classifier


def log_iris_run(
    client: gitml.Client, *, metrics: dict[str, float] | None = None, name: str = "model"
) -> tuple[str, Any, Any]:
    """A finished run holding a logged iris classifier: (run id, estimator, features)."""
    clf, features = iris_classifier()
    run = client.create_run(run_name="iris")
    for key, value in (metrics or {}).items():
        client.log_metric(run.id, key, value)
    gitml.sklearn.log_model(clf, name, input_example=features.head(2), run_id=run.id)
    client.set_terminated(run.id)
    return run.id, clf, features
