"""The Flavor protocol and the one table of flavors.

This test module is itself a flavor ("echo"): a flavor is one module and one
line of ``FLAVORS``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import gitml
import gitml.pyfunc
from gitml.models import flavor, mlmodel
from gitml.models.flavor import FLAVORS, FlavorEntry, Predictor
from gitml.models.mlmodel import Model

FLAVOR_NAME = "echo"
LOADER_MODULE = __name__
REQUIREMENTS: tuple[str, ...] = ()


def save(model: Any, path: Path, *, suffix: str = "") -> dict[str, Any]:
    (path / "echo.json").write_text(json.dumps({"model": model, "suffix": suffix}))
    return {"file": "echo.json"}


def pyfunc_conf(flavor_conf: Mapping[str, Any]) -> dict[str, Any]:
    return {"loader_module": LOADER_MODULE}


def load(path: Path, flavor_conf: Mapping[str, Any]) -> Any:
    return json.loads(mlmodel.model_file(path, flavor_conf["file"]).read_text())


class _Echo:
    def __init__(self, saved: Any) -> None:
        self.saved = saved

    def predict(self, data: Any, params: Mapping[str, Any] | None = None) -> Any:
        return [f"{self.saved['model']}{item}{self.saved['suffix']}" for item in data]


def load_pyfunc(path: Path, model: Model) -> Predictor:
    return _Echo(load(path, model.flavors[FLAVOR_NAME]))


@pytest.mark.parametrize("entry", FLAVORS, ids=[entry.name for entry in FLAVORS])
def test_every_flavor_of_the_table_is_the_module_it_names(entry: FlavorEntry) -> None:
    module = entry.load()
    assert entry.name == module.FLAVOR_NAME
    assert entry.module == module.LOADER_MODULE
    for member in ("save", "pyfunc_conf", "load", "load_pyfunc"):
        assert callable(getattr(module, member)), f"{entry.module} has no {member}()"
    assert flavor.named(entry.name) is module


def test_a_new_flavor_is_one_module_and_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(gitml.InvalidInput, match="gitml has no flavor 'echo'; it has python_func"):
        flavor.named(FLAVOR_NAME)
    monkeypatch.setattr(flavor, "FLAVORS", (*FLAVORS, FlavorEntry(FLAVOR_NAME, __name__)))
    saved = mlmodel.save(flavor.named(FLAVOR_NAME), "hello ", tmp_path / "m", suffix="!")
    assert saved.flavors["python_function"]["loader_module"] == __name__
    assert gitml.pyfunc.load_model(tmp_path / "m").predict(["a", "b"]) == ["hello a!", "hello b!"]
    assert __name__ in flavor.loader_modules()


def test_mlflow_loader_modules_load_through_gitml_flavors() -> None:
    sklearn = flavor.for_model("mlflow.sklearn", {"python_function": {}, "sklearn": {}})
    assert sklearn is flavor.named("sklearn")
    # An unknown loader falls back to the model's own flavor, never to python_function.
    assert flavor.for_model("elsewhere.sklearn", {"python_function": {}, "sklearn": {}}) is sklearn
    assert flavor.for_model(None, {"python_function": {}}) is None
    assert flavor.for_model("elsewhere", {"python_function": {}, "keras": {}}) is None
