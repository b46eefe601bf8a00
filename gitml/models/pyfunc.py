"""python_function: the one contract every model exposes, and custom models.

``load_model(uri).predict(data, params=None)`` scores any model whose
``MLmodel`` has a python_function flavor; the input is checked against the
signature first, and ``InvalidInput`` names the column or type that is wrong.

Custom models subclass ``PythonModel`` and are saved with ``pickle`` (gitml
does not use cloudpickle): the class must be importable, by the same module
path, wherever the model is loaded. Files named in ``artifacts`` are copied
into the model directory and given back as ``context.artifacts``.

**Loading a pickle runs code.** Only load models you trust. gitml loads only
the model you name, and first checks every file's sha256: against the run's
artifact manifest for ``runs:/`` URIs, and against the ``gitml.sha256`` file
written at save time for directories (``gitml.Corrupt`` if anything changed).
"""

from __future__ import annotations

import os
import pickle
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitml.errors import InvalidInput
from gitml.models import flavor, mlmodel
from gitml.models.flavor import Flavor, Predictor
from gitml.models.mlmodel import Model, ModelInfo
from gitml.models.signature import ModelSignature, enforce, enforce_params

FLAVOR_NAME = flavor.PYTHON_FUNCTION
LOADER_MODULE = "gitml.models.pyfunc"
REQUIREMENTS: tuple[str, ...] = ()
PYTHON_MODEL = "python_model.pkl"
ARTIFACTS = "artifacts"


class PyFuncModel:
    """A loaded model: ``metadata`` (the ``MLmodel``) and ``predict``."""

    def __init__(self, metadata: Model, implementation: Predictor) -> None:
        self.metadata = metadata
        self._implementation = implementation

    @property
    def signature(self) -> ModelSignature | None:
        return self.metadata.signature

    def predict(self, data: Any, params: Mapping[str, Any] | None = None) -> Any:
        """Score ``data`` after checking it against the input signature."""
        signature = self.metadata.signature
        if signature is not None:
            if signature.inputs is not None:
                data = enforce(signature.inputs, data)
            params = enforce_params(signature.params, params)
        return self._implementation.predict(data, params)

    def unwrap_python_model(self) -> Any:
        inner = self._implementation
        if isinstance(inner, _PythonModelWrapper):
            return inner.python_model
        raise InvalidInput("this model is not a custom PythonModel")

    def __repr__(self) -> str:
        meta = self.metadata
        return f"PyFuncModel(flavors={sorted(meta.flavors)}, run_id={meta.run_id})"


def load_model(model_uri: str | os.PathLike[str]) -> PyFuncModel:
    """Load any model with a python_function flavor, from a path or ``runs:/`` URI."""
    hint = "; load it with its own flavor"
    directory, model, conf = mlmodel.flavor_of(model_uri, FLAVOR_NAME, hint=hint)
    module = _loader(conf, model)
    mlmodel.verify(directory)  # before anything is unpickled
    return PyFuncModel(model, module.load_pyfunc(directory, model))


def _loader(conf: Mapping[str, Any], model: Model) -> Flavor:
    loader = conf.get("loader_module")
    found = flavor.for_model(loader, model.flavors)
    if found is None:
        raise InvalidInput(
            f"python_function loader_module {loader!r} has no gitml flavor; "
            f"known: {', '.join(flavor.loader_modules())}"
        )
    return found


# -- custom models -------------------------------------------------------------------


@dataclass
class PythonModelContext:
    """What ``load_context`` receives: bundled artifact paths and model config."""

    artifacts: dict[str, str] = field(default_factory=dict)
    model_config: dict[str, Any] = field(default_factory=dict)


class PythonModel:
    """Base class of custom models; subclasses override ``predict``."""

    def load_context(self, context: PythonModelContext) -> None:
        """Load what ``predict`` needs from ``context.artifacts``; called once at load."""

    def predict(
        self, context: PythonModelContext, model_input: Any, params: dict[str, Any] | None = None
    ) -> Any:
        raise NotImplementedError


class _PythonModelWrapper:
    def __init__(self, python_model: PythonModel, context: PythonModelContext) -> None:
        self.python_model = python_model
        self.context = context

    def predict(self, data: Any, params: Mapping[str, Any] | None = None) -> Any:
        return self.python_model.predict(
            self.context, data, params=dict(params) if params is not None else None
        )


def save(
    model: PythonModel,
    path: Path,
    *,
    artifacts: Mapping[str, str | os.PathLike[str]] | None = None,
    model_config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    if not isinstance(model, PythonModel):
        raise InvalidInput(f"python_model must be a gitml.pyfunc.PythonModel, not {type(model)}")
    with open(path / PYTHON_MODEL, "wb") as f:
        pickle.dump(model, f, protocol=pickle.DEFAULT_PROTOCOL)
    bundled: dict[str, dict[str, str]] = {}
    for name, source in (artifacts or {}).items():
        src = Path(source)
        if not src.exists():
            raise InvalidInput(f"artifact {name!r}: {src} does not exist")
        rel = f"{ARTIFACTS}/{name}/{src.name}"
        dest = path / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dest)
        else:
            shutil.copy2(src, dest)
        bundled[name] = {"path": rel, "uri": os.fspath(source)}
    conf: dict[str, Any] = {
        "loader_module": LOADER_MODULE,
        "python_model": PYTHON_MODEL,
        "artifacts": bundled,
        "code": None,
    }
    if model_config:
        conf["model_config"] = dict(model_config)
    return conf


def pyfunc_conf(flavor_conf: Mapping[str, Any]) -> dict[str, Any]:
    return dict(flavor_conf)


def load(path: Path, flavor_conf: Mapping[str, Any]) -> PythonModel:
    with open(mlmodel.model_file(path, flavor_conf.get("python_model", PYTHON_MODEL)), "rb") as f:
        loaded = pickle.load(f)
    if not isinstance(loaded, PythonModel):
        raise InvalidInput(f"{path / PYTHON_MODEL} does not hold a gitml PythonModel")
    return loaded


def load_pyfunc(path: Path, model: Model) -> Predictor:
    conf = model.flavors[FLAVOR_NAME]
    python_model = load(path, conf)
    artifacts = {
        name: str(mlmodel.model_file(path, entry["path"]))
        for name, entry in (conf.get("artifacts") or {}).items()
    }
    context = PythonModelContext(artifacts, dict(conf.get("model_config") or {}))
    python_model.load_context(context)
    return _PythonModelWrapper(python_model, context)


def _load_pyfunc(data_path: str) -> Predictor:
    """MLflow's loader hook: ``mlflow.pyfunc.load_model`` calls it with the model directory."""
    directory = Path(data_path)
    directory = directory.parent if directory.is_file() else directory
    mlmodel.verify(directory)
    return load_pyfunc(directory, Model.load(directory))


# -- the MLflow-style entry points ---------------------------------------------------------


def save_model(
    path: str | os.PathLike[str],
    python_model: PythonModel,
    *,
    artifacts: Mapping[str, str | os.PathLike[str]] | None = None,
    signature: ModelSignature | None = None,
    input_example: Any = None,
    metadata: Mapping[str, Any] | None = None,
    model_config: Mapping[str, Any] | None = None,
) -> Model:
    """Write a custom model directory at ``path``."""
    return mlmodel.save(
        _self(),
        python_model,
        Path(path),
        signature=signature,
        input_example=input_example,
        metadata=metadata,
        artifacts=artifacts,
        model_config=model_config,
    )


def log_model(
    python_model: PythonModel,
    name: str,
    *,
    artifacts: Mapping[str, str | os.PathLike[str]] | None = None,
    signature: ModelSignature | None = None,
    input_example: Any = None,
    metadata: Mapping[str, Any] | None = None,
    model_config: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    registered_model_name: str | None = None,
) -> ModelInfo:
    """Store a custom model as artifacts of the active run (or ``run_id``) under ``name``."""
    return mlmodel.log(
        _self(),
        python_model,
        name,
        signature=signature,
        input_example=input_example,
        metadata=metadata,
        run_id=run_id,
        registered_model_name=registered_model_name,
        artifacts=artifacts,
        model_config=model_config,
    )


def _self() -> Flavor:
    return flavor.named(FLAVOR_NAME)


if TYPE_CHECKING:  # mypy checks that this module provides what a flavor must
    from gitml.models import pyfunc as _this

    _CHECKED: Flavor = _this
