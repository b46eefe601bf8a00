"""What a flavor is, and the one table of gitml's flavors.

A flavor saves one kind of model (a scikit-learn estimator, a torch module, a
custom ``PythonModel``) in MLflow's directory layout and loads it back, both
natively and behind the ``python_function`` contract. Each flavor is a module
that provides what :class:`Flavor` lists; ``FLAVORS`` names them all. Adding a
flavor is one module and one line of ``FLAVORS``: ``mlmodel.save`` writes any
flavor's ``MLmodel``, and ``pyfunc.load_model`` finds the flavor of a model by
the ``loader_module`` its ``MLmodel`` names (gitml's or MLflow's), else by its
flavor names.

The modules are imported when a model of theirs is saved or loaded, not
before: a flavor may need a heavy framework (torch).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from gitml.errors import InvalidInput

if TYPE_CHECKING:
    from gitml.models.mlmodel import Model

PYTHON_FUNCTION = "python_function"


class Predictor(Protocol):
    """What every loaded model offers behind ``python_function``."""

    def predict(self, data: Any, params: Mapping[str, Any] | None) -> Any: ...


class Flavor(Protocol):
    """A flavor module.

    The native model is ``Any``: each flavor takes its own framework's type.
    """

    # The flavor's key in ``MLmodel``'s ``flavors``.
    FLAVOR_NAME: str
    # What ``python_function``'s ``loader_module`` names for this flavor's models.
    LOADER_MODULE: str
    # The distributions a model of this flavor needs, pinned in its environment files.
    REQUIREMENTS: tuple[str, ...]

    def save(self, model: Any, path: Path, /, *args: Any, **options: Any) -> dict[str, Any]:
        """Write ``model``'s files into the directory ``path``; the flavor's configuration.

        ``options`` are the flavor's own keywords (``serialization_format``...).
        """
        ...

    def pyfunc_conf(self, flavor_conf: Mapping[str, Any]) -> dict[str, Any]:
        """The ``python_function`` keys this flavor adds (``loader_module`` at least)."""
        ...

    def load(self, path: Path, flavor_conf: Mapping[str, Any]) -> Any:
        """The native model saved in ``path`` (checked by sha256 before, by the caller)."""
        ...

    def load_pyfunc(self, path: Path, model: Model) -> Predictor:
        """The model in ``path`` behind ``predict(data, params)``."""
        ...


@dataclass(frozen=True)
class FlavorEntry:
    """One line of the table: a flavor's name, its module, and MLflow's loader of it."""

    name: str
    module: str
    # MLflow's ``loader_module`` for this flavor: MLflow-saved models load through ``module``.
    mlflow_loader: str | None = None

    def load(self) -> Flavor:
        return cast(Flavor, importlib.import_module(self.module))


FLAVORS: tuple[FlavorEntry, ...] = (
    FlavorEntry(PYTHON_FUNCTION, "gitml.models.pyfunc"),
    FlavorEntry("sklearn", "gitml.models.sklearn", "mlflow.sklearn"),
    FlavorEntry("pytorch", "gitml.models.pytorch", "mlflow.pytorch"),
)


def named(name: str) -> Flavor:
    """The flavor called ``name`` (a flavor module passes its own ``FLAVOR_NAME``)."""
    for entry in FLAVORS:
        if entry.name == name:
            return entry.load()
    known = ", ".join(entry.name for entry in FLAVORS)
    raise InvalidInput(f"gitml has no flavor {name!r}; it has {known}")


def loader_modules() -> list[str]:
    """Every ``loader_module`` gitml loads, sorted."""
    return sorted(
        {entry.module for entry in FLAVORS}
        | {entry.mlflow_loader for entry in FLAVORS if entry.mlflow_loader}
    )


def for_model(loader_module: object, flavor_names: Mapping[str, Any]) -> Flavor | None:
    """The flavor that loads a model whose ``python_function`` names ``loader_module``.

    A loader module gitml does not know falls back to the first of the model's
    own flavors that gitml has (``python_function`` aside: every model has it).
    """
    for entry in FLAVORS:
        if loader_module is not None and loader_module in (entry.module, entry.mlflow_loader):
            return entry.load()
    for entry in FLAVORS:
        if entry.name != PYTHON_FUNCTION and entry.name in flavor_names:
            return entry.load()
    return None
