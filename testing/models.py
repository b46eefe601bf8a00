"""Sample models for tests and benchmarks: a real iris classifier, a custom PythonModel.

The custom model lives here, not in a test file, because a pickled class must
be importable by the same module path wherever the model is loaded.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from gitml.models.pyfunc import PythonModel, PythonModelContext


def iris() -> tuple[Any, Any]:
    """(features as a pandas DataFrame, labels as a Series)."""
    # importlib: scikit-learn ships no type information.
    datasets = importlib.import_module("sklearn.datasets")
    features, labels = datasets.load_iris(return_X_y=True, as_frame=True)
    return features, labels


def iris_classifier() -> tuple[Any, Any]:
    """(a LogisticRegression fitted on iris, the features it was fitted on)."""
    linear = importlib.import_module("sklearn.linear_model")
    features, labels = iris()
    return linear.LogisticRegression(max_iter=1000).fit(features, labels), features


class AddOffset(PythonModel):
    """Adds the number stored in the ``offset`` artifact to every input value."""

    def __init__(self) -> None:
        self.offset: float | None = None

    def load_context(self, context: PythonModelContext) -> None:
        self.offset = float(Path(context.artifacts["offset"]).read_text())

    def predict(
        self, context: PythonModelContext, model_input: Any, params: dict[str, Any] | None = None
    ) -> Any:
        assert self.offset is not None
        scale = float((params or {}).get("scale", 1.0))
        return (model_input + self.offset) * scale
