"""The sklearn flavor: scikit-learn estimators saved as MLflow saves them.

``serialization_format`` is ``pickle`` by default (MLflow writes
``cloudpickle``; both are read with ``pickle``, so MLflow-saved models load
here as long as they need nothing cloudpickle-specific), or ``skops`` when the
``skops`` package is installed: a format that does not run arbitrary code
when loaded, and refuses types it does not know.

**Loading a pickle runs code.** Only load models you trust; gitml checks every
file's sha256 before unpickling (see ``gitml.models.pyfunc``).
"""

from __future__ import annotations

import copy
import importlib
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitml.errors import InvalidInput
from gitml.models import flavor, mlmodel
from gitml.models.flavor import Flavor
from gitml.models.mlmodel import Model, ModelInfo
from gitml.models.signature import ModelSignature

FLAVOR_NAME = "sklearn"
LOADER_MODULE = "gitml.models.sklearn"
REQUIREMENTS: tuple[str, ...] = ("scikit-learn", "numpy", "scipy")
SERIALIZATION_FORMATS = ("pickle", "cloudpickle", "skops")
_FILES = {"pickle": "model.pkl", "cloudpickle": "model.pkl", "skops": "model.skops"}


def save(model: Any, path: Path, *, serialization_format: str = "pickle") -> dict[str, Any]:
    if serialization_format not in ("pickle", "skops"):
        raise InvalidInput(
            f"serialization_format {serialization_format!r}: gitml writes 'pickle' or 'skops'"
        )
    file = _FILES[serialization_format]
    if serialization_format == "skops":
        _skops().dump(model, path / file)
    else:
        with open(path / file, "wb") as f:
            pickle.dump(model, f, protocol=pickle.DEFAULT_PROTOCOL)
    return {
        "code": None,
        "pickled_model": file,
        "serialization_format": serialization_format,
        "sklearn_version": importlib.import_module("sklearn").__version__,
    }


def pyfunc_conf(flavor_conf: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "loader_module": LOADER_MODULE,
        "model_path": flavor_conf["pickled_model"],
        "predict_fn": "predict",
    }


def load(path: Path, flavor_conf: Mapping[str, Any]) -> Any:
    """The estimator stored in ``path`` (call ``mlmodel.verify`` or go through a URI first)."""
    fmt = str(flavor_conf.get("serialization_format", "cloudpickle"))
    file = mlmodel.model_file(path, flavor_conf.get("pickled_model", _FILES.get(fmt, "model.pkl")))
    if fmt == "skops":
        skops = _skops()
        untrusted = skops.get_untrusted_types(file=file)
        if untrusted:
            raise InvalidInput(
                f"{file}: skops found types it does not trust: {', '.join(untrusted)}; "
                "load it with skops.io.load(..., trusted=[...]) after reviewing them"
            )
        return skops.load(file)
    if fmt not in ("pickle", "cloudpickle"):
        raise InvalidInput(f"{file}: serialization_format {fmt!r} is not supported")
    with open(file, "rb") as f:
        return pickle.load(f)


class _Predictor:
    def __init__(self, estimator: Any, predict_fn: str) -> None:
        self.estimator = estimator
        self.predict_fn = getattr(estimator, predict_fn)
        # scikit-learn spends most of a small request validating a DataFrame; a
        # numpy array of the same values scores identically and far faster.
        self._names: tuple[str, ...] | None = None
        self._array_fn: Any = None
        if not hasattr(estimator, "feature_names_in_"):
            self._array_fn = self.predict_fn  # fitted without names: nothing to check
        elif _plain_estimator(estimator):
            # Fitted with names: check them here, then score an array on a shallow
            # copy without feature_names_in_ (so sklearn does not warn about it).
            bare = copy.copy(estimator)
            del bare.feature_names_in_
            self._names = tuple(str(n) for n in estimator.feature_names_in_)
            self._array_fn = getattr(bare, predict_fn)

    def predict(self, data: Any, params: Mapping[str, Any] | None = None) -> Any:
        fast = self._array_fn is not None and type(data).__name__ == "DataFrame"
        if fast and (self._names is None or tuple(data.columns) == self._names):
            return self._array_fn(data.to_numpy())
        return self.predict_fn(data)


def _plain_estimator(estimator: Any) -> bool:
    """A fitted estimator that uses its feature names only to check its input.

    Meta-estimators and column selectors (Pipeline, ColumnTransformer, search and
    ensemble wrappers) may select columns by name, so they keep the DataFrame.
    """
    if "feature_names_in_" not in vars(estimator):
        return False
    meta = ("steps", "transformers", "estimator", "estimators", "base_estimator")
    return not any(hasattr(estimator, attr) for attr in meta)


def load_pyfunc(path: Path, model: Model) -> _Predictor:
    conf = model.flavors.get(FLAVOR_NAME)
    pyfunc = model.flavors.get("python_function", {})
    if conf is None:  # an MLflow python_function-only sklearn model
        conf = {"pickled_model": pyfunc.get("model_path", "model.pkl")}
    return _Predictor(load(path, conf), str(pyfunc.get("predict_fn", "predict")))


def _load_pyfunc(data_path: str) -> _Predictor:
    """MLflow's loader hook: ``mlflow.pyfunc.load_model`` calls it with the model file."""
    directory = Path(data_path)
    directory = directory.parent if directory.is_file() else directory
    mlmodel.verify(directory)
    return load_pyfunc(directory, Model.load(directory))


def _skops() -> Any:
    try:
        return importlib.import_module("skops.io")
    except ImportError:
        raise InvalidInput("serialization_format 'skops' needs the skops package") from None


# -- the MLflow-style entry points -----------------------------------------------------


def save_model(
    sk_model: Any,
    path: str | os.PathLike[str],
    *,
    serialization_format: str = "pickle",
    signature: ModelSignature | None = None,
    input_example: Any = None,
    metadata: Mapping[str, Any] | None = None,
) -> Model:
    """Write ``sk_model`` as a model directory at ``path``."""
    return mlmodel.save(
        _self(),
        sk_model,
        Path(path),
        signature=signature,
        input_example=input_example,
        metadata=metadata,
        serialization_format=serialization_format,
    )


def log_model(
    sk_model: Any,
    name: str,
    *,
    serialization_format: str = "pickle",
    signature: ModelSignature | None = None,
    input_example: Any = None,
    metadata: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    registered_model_name: str | None = None,
) -> ModelInfo:
    """Store ``sk_model`` as artifacts of the active run (or ``run_id``) under ``name``."""
    return mlmodel.log(
        _self(),
        sk_model,
        name,
        signature=signature,
        input_example=input_example,
        metadata=metadata,
        run_id=run_id,
        registered_model_name=registered_model_name,
        serialization_format=serialization_format,
    )


def load_model(model_uri: str | os.PathLike[str]) -> Any:
    """The scikit-learn estimator a model URI holds, checked by sha256 before unpickling."""
    directory, _, conf = mlmodel.flavor_of(model_uri, FLAVOR_NAME)
    mlmodel.verify(directory)
    return load(directory, conf)


def _self() -> Flavor:
    return flavor.named(FLAVOR_NAME)


if TYPE_CHECKING:  # mypy checks that this module provides what a flavor must
    from gitml.models import sklearn as _this

    _CHECKED: Flavor = _this
