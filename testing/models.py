"""Sample models for tests and benchmarks: a real iris classifier, a small torch
regressor, a custom PythonModel.

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


def torch_regressor(dtype: str = "float32") -> tuple[Any, Any]:
    """(a small ``torch.nn.Sequential`` trained on CPU, the features it was trained on).

    y = 2*x0 - x1 + 0.5*x2 + 0.1, 64 rows of 3 features, fixed seeds, 100 full-batch
    gradient steps: well under a second. Built from ``torch.nn`` classes only, so the
    pickled model loads wherever torch is installed. ``dtype`` is the weights' and
    the features' numpy dtype.
    """
    np = importlib.import_module("numpy")
    torch = importlib.import_module("torch")
    torch.manual_seed(0)
    features = np.random.default_rng(0).normal(size=(64, 3)).astype(dtype)
    target = features @ np.array([2.0, -1.0, 0.5], dtype=dtype) + 0.1
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    net = net.to(getattr(torch, dtype))
    x, y = torch.from_numpy(features), torch.from_numpy(target).unsqueeze(1)
    for _ in range(100):  # plain gradient descent: torch.optim costs seconds to import
        net.zero_grad()
        torch.nn.functional.mse_loss(net(x), y).backward()
        with torch.no_grad():
            for param in net.parameters():
                param -= 0.1 * param.grad
    return net.eval(), features


def torch_predict(net: Any, features: Any) -> Any:
    """What ``net`` predicts for a numpy array, as a numpy array: the in-process answer."""
    torch = importlib.import_module("torch")
    with torch.no_grad():
        return net(torch.from_numpy(features)).numpy()


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


class FailsOnPredict(PythonModel):
    """A custom model that loads but raises on every prediction: a broken version."""

    def predict(
        self, context: PythonModelContext, model_input: Any, params: dict[str, Any] | None = None
    ) -> Any:
        raise RuntimeError("this model is broken on purpose")


def edit_flavor(model: Path, flavor: str, **settings: Any) -> None:
    """Change ``flavor``'s settings in ``model/MLmodel`` and list the files again in
    ``gitml.sha256``, as someone who rewrote the model by hand would."""
    from gitml.format import yamlio
    from gitml.format.mlmodel import MLMODEL
    from gitml.models import mlmodel

    data = yamlio.load((model / MLMODEL).read_bytes())
    data["flavors"][flavor].update(settings)
    (model / MLMODEL).write_bytes(yamlio.dump(data))
    mlmodel.write_manifest(model)


def leads_outside(tmp_path: Path, how: str, model: Path, inside: str) -> str:
    """Point ``model``'s file ``inside`` at ``tmp_path/outside.pkl`` (a pickled dict, not a
    model): the relative path to give in MLmodel (``relative``, ``absolute``), or with
    ``symlink`` the file itself replaced by a symlink (the name to keep)."""
    import pickle

    outside = tmp_path / "outside.pkl"
    outside.write_bytes(pickle.dumps({"not": "the model"}))
    if how == "relative":
        return "../" * len(Path(inside).parts) + "outside.pkl"
    if how == "absolute":
        return str(outside)
    (model / inside).unlink()
    (model / inside).symlink_to(outside)
    return inside
