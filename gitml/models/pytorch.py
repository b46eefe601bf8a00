"""The pytorch flavor: ``torch.nn.Module`` models saved as MLflow's pytorch flavor saves them.

The directory holds ``data/model.pth`` (``torch.save(model, ...)``, the whole
module pickled) and ``data/pickle_module_info.txt``, the name of the module
that pickled it; ``MLmodel`` has a ``pytorch`` flavor with ``model_data: data``,
``pytorch_version`` and ``code: null``. gitml pickles with the standard
library's ``pickle`` and says so in ``pickle_module_info.txt``, so
``mlflow.pytorch.load_model`` loads a gitml model without cloudpickle, and
gitml loads MLflow's ``mlflow.pytorch.pickle_module`` (cloudpickle) files with
``pickle``, which reads what cloudpickle writes. Models MLflow 3 saves in its
default ``pt2`` format (``data/model.pt2``, ``torch.export``) load too.

The model's class must be importable, by the same module path, wherever the
model is loaded (``torch.nn`` containers such as ``Sequential`` always are).
Tensors are loaded onto the CPU; move the model with ``.to(device)`` after.

**Loading a pickle runs code.** ``torch.load(..., weights_only=False)``
unpickles the whole module, so only load models you trust; gitml calls it only
after checking every file's sha256 (see ``gitml.models.pyfunc``).
"""

from __future__ import annotations

import importlib
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitml.errors import InvalidInput
from gitml.format.mlmodel import MLMODEL
from gitml.models import flavor, mlmodel
from gitml.models.flavor import Flavor
from gitml.models.mlmodel import Model, ModelInfo
from gitml.models.signature import ModelSignature

FLAVOR_NAME = "pytorch"
LOADER_MODULE = "gitml.models.pytorch"
REQUIREMENTS: tuple[str, ...] = ("torch", "numpy")
MODEL_DATA = "data"
MODEL_FILE = "model.pth"
EXPORTED_FILE = "model.pt2"  # MLflow 3's default serialization_format "pt2"
PICKLE_MODULE_INFO = "pickle_module_info.txt"
# What a model.pth may have been pickled with; all of them are read by ``pickle``
# (cloudpickle writes ordinary pickles, and its ``load`` is ``pickle.load``).
PICKLE_MODULES = ("pickle", "cloudpickle", "mlflow.pytorch.pickle_module")


def save(model: Any, path: Path) -> dict[str, Any]:
    torch = importlib.import_module("torch")
    if not isinstance(model, torch.nn.Module):
        raise InvalidInput(f"pytorch_model must be a torch.nn.Module, not {type(model).__name__}")
    data = path / MODEL_DATA
    data.mkdir()
    # MLflow's loader reads this file and unpickles with the module it names.
    (data / PICKLE_MODULE_INFO).write_text(pickle.__name__)
    torch.save(model, data / MODEL_FILE, pickle_module=pickle)
    return {"code": None, "model_data": MODEL_DATA, "pytorch_version": str(torch.__version__)}


def pyfunc_conf(flavor_conf: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "loader_module": LOADER_MODULE,
        "data": flavor_conf["model_data"],
        "pickle_module_name": pickle.__name__,
    }


def load(path: Path, flavor_conf: Mapping[str, Any]) -> Any:
    """The module stored in ``path`` (call ``mlmodel.verify`` or go through a URI first).

    This unpickles ``data/model.pth`` with ``weights_only=False``: it runs code.
    """
    torch = importlib.import_module("torch")
    data = str(flavor_conf.get("model_data", MODEL_DATA))
    file = mlmodel.model_file(path, f"{data}/{MODEL_FILE}")
    if not file.is_file():
        exported = mlmodel.model_file(path, f"{data}/{EXPORTED_FILE}")
        if exported.is_file():
            return torch.export.load(exported).module()
        raise InvalidInput(f"model {path}: {file.relative_to(path)} is missing")
    info = mlmodel.model_file(path, f"{data}/{PICKLE_MODULE_INFO}")
    pickled_with = info.read_text().strip() if info.is_file() else pickle.__name__
    if pickled_with not in PICKLE_MODULES:
        raise InvalidInput(
            f"{file}: pickled with {pickled_with!r}; gitml reads {', '.join(PICKLE_MODULES)}"
        )
    model = torch.load(file, map_location="cpu", pickle_module=pickle, weights_only=False)
    model.eval()
    return model


class _Predictor:
    """``predict``: the module's forward pass, in eval mode, without gradients."""

    def __init__(self, model: Any) -> None:
        self.model = model
        torch = importlib.import_module("torch")
        self._torch = torch
        # A module of float32 weights fails on float64 input (what JSON and numpy give by
        # default), so floating inputs are cast to the floating dtype of its parameters.
        self._float = next(
            (p.dtype for p in model.parameters() if p.dtype.is_floating_point), torch.float32
        )

    def predict(self, data: Any, params: Mapping[str, Any] | None = None) -> Any:
        torch = self._torch
        with torch.no_grad():
            if isinstance(data, Mapping):
                kwargs = {str(k): self._tensor(v) for k, v in data.items()}
                output = self.model(**kwargs)
            else:
                output = self.model(self._tensor(data))
        return _numpy(output)

    def _tensor(self, data: Any) -> Any:
        torch = self._torch
        np = importlib.import_module("numpy")
        if isinstance(data, torch.Tensor):
            tensor = data
        else:
            if type(data).__name__ in ("DataFrame", "Series"):
                array = data.to_numpy(dtype=np.float32)  # the values, as MLflow converts them
            else:
                array = np.asarray(data)
            if array.dtype.kind not in "biuf":
                raise InvalidInput(f"a pytorch model takes numbers, not an array of {array.dtype}")
            array = np.ascontiguousarray(array)
            if not array.flags.writeable:  # torch warns on read-only memory (pandas' frames)
                array = array.copy()
            tensor = torch.from_numpy(array)
        return tensor.to(self._float) if tensor.is_floating_point() else tensor


def _numpy(output: Any) -> Any:
    """Tensors (alone, or in a tuple, list or dict) as numpy arrays."""
    if hasattr(output, "detach"):
        return output.detach().cpu().numpy()
    if isinstance(output, Mapping):
        return {k: _numpy(v) for k, v in output.items()}
    if isinstance(output, (list, tuple)):
        return [_numpy(v) for v in output]
    return output


def load_pyfunc(path: Path, model: Model) -> _Predictor:
    conf = model.flavors.get(FLAVOR_NAME)
    if conf is None:  # a python_function-only model naming its data directory
        pyfunc = model.flavors.get("python_function", {})
        conf = {"model_data": pyfunc.get("data", MODEL_DATA)}
    return _Predictor(load(path, conf))


def _load_pyfunc(data_path: str, model_config: Mapping[str, Any] | None = None) -> _Predictor:
    """MLflow's loader hook: ``mlflow.pyfunc.load_model`` calls it with ``<model>/data``."""
    directory = Path(data_path)
    if not (directory / MLMODEL).is_file():
        directory = directory.parent
    mlmodel.verify(directory)
    return load_pyfunc(directory, Model.load(directory))


# -- the MLflow-style entry points -----------------------------------------------------


def save_model(
    pytorch_model: Any,
    path: str | os.PathLike[str],
    *,
    signature: ModelSignature | None = None,
    input_example: Any = None,
    metadata: Mapping[str, Any] | None = None,
) -> Model:
    """Write ``pytorch_model`` (a ``torch.nn.Module``) as a model directory at ``path``."""
    return mlmodel.save(
        _self(),
        pytorch_model,
        Path(path),
        signature=signature,
        input_example=input_example,
        metadata=metadata,
    )


def log_model(
    pytorch_model: Any,
    name: str,
    *,
    signature: ModelSignature | None = None,
    input_example: Any = None,
    metadata: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    registered_model_name: str | None = None,
) -> ModelInfo:
    """Store ``pytorch_model`` as artifacts of the active run (or ``run_id``) under ``name``."""
    return mlmodel.log(
        _self(),
        pytorch_model,
        name,
        signature=signature,
        input_example=input_example,
        metadata=metadata,
        run_id=run_id,
        registered_model_name=registered_model_name,
    )


def load_model(model_uri: str | os.PathLike[str]) -> Any:
    """The ``torch.nn.Module`` a model URI holds, in eval mode, on the CPU.

    Every file's sha256 is checked first; then the module is unpickled, which runs code.
    """
    directory, _, conf = mlmodel.flavor_of(model_uri, FLAVOR_NAME)
    mlmodel.verify(directory)
    return load(directory, conf)


def _self() -> Flavor:
    return flavor.named(FLAVOR_NAME)


if TYPE_CHECKING:  # mypy checks that this module provides what a flavor must
    from gitml.models import pytorch as _this

    _CHECKED: Flavor = _this
