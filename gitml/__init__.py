"""gitml: the machine-learning lifecycle with Git as the database.

``import gitml`` stays cheap (no dulwich, no pydantic) because scripts and the
CLI import it on every start; each name below is loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gitml._version import __version__ as __version__

# What mypy sees of the names below (``as`` re-exports them); a test checks
# that it imports exactly the names of ``_WHERE``, each from its module.
if TYPE_CHECKING:
    from gitml.errors import Conflict as Conflict
    from gitml.errors import Corrupt as Corrupt
    from gitml.errors import GitmlError as GitmlError
    from gitml.errors import InvalidInput as InvalidInput
    from gitml.errors import InvalidRecord as InvalidRecord
    from gitml.errors import NotARepository as NotARepository
    from gitml.errors import NotFound as NotFound
    from gitml.format.records import Experiment as Experiment
    from gitml.format.records import ModelVersion as ModelVersion
    from gitml.format.records import RegisteredModel as RegisteredModel
    from gitml.format.records import Run as Run
    from gitml.registry.versions import Registry as Registry
    from gitml.registry.versions import register_model as register_model
    from gitml.tracking.client import Client as Client
    from gitml.tracking.entities import Metric as Metric
    from gitml.tracking.entities import Param as Param
    from gitml.tracking.entities import RunTag as RunTag
    from gitml.tracking.fluent import ActiveRun as ActiveRun
    from gitml.tracking.fluent import active_run as active_run
    from gitml.tracking.fluent import end_run as end_run
    from gitml.tracking.fluent import get_run as get_run
    from gitml.tracking.fluent import get_tracking_uri as get_tracking_uri
    from gitml.tracking.fluent import last_active_run_id as last_active_run_id
    from gitml.tracking.fluent import log_artifact as log_artifact
    from gitml.tracking.fluent import log_artifacts as log_artifacts
    from gitml.tracking.fluent import log_dict as log_dict
    from gitml.tracking.fluent import log_figure as log_figure
    from gitml.tracking.fluent import log_metric as log_metric
    from gitml.tracking.fluent import log_metrics as log_metrics
    from gitml.tracking.fluent import log_param as log_param
    from gitml.tracking.fluent import log_params as log_params
    from gitml.tracking.fluent import log_text as log_text
    from gitml.tracking.fluent import search_runs as search_runs
    from gitml.tracking.fluent import set_experiment as set_experiment
    from gitml.tracking.fluent import set_tag as set_tag
    from gitml.tracking.fluent import set_tags as set_tags
    from gitml.tracking.fluent import set_tracking_uri as set_tracking_uri
    from gitml.tracking.fluent import start_run as start_run

# The public names and the module each is loaded from on first use.
_WHERE: dict[str, str] = {
    name: module
    for module, names in {
        "gitml.tracking.fluent": (
            "ActiveRun",
            "active_run",
            "end_run",
            "get_run",
            "get_tracking_uri",
            "last_active_run_id",
            "log_artifact",
            "log_artifacts",
            "log_dict",
            "log_figure",
            "log_metric",
            "log_metrics",
            "log_param",
            "log_params",
            "log_text",
            "search_runs",
            "set_experiment",
            "set_tag",
            "set_tags",
            "set_tracking_uri",
            "start_run",
        ),
        "gitml.tracking.client": ("Client",),
        "gitml.tracking.entities": ("Metric", "Param", "RunTag"),
        "gitml.format.records": ("Experiment", "Run", "ModelVersion", "RegisteredModel"),
        "gitml.registry.versions": ("Registry", "register_model"),
        "gitml.errors": (
            "Conflict",
            "Corrupt",
            "GitmlError",
            "InvalidInput",
            "InvalidRecord",
            "NotARepository",
            "NotFound",
        ),
    }.items()
    for name in names
}

__all__ = sorted(["__version__", *_WHERE])


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'gitml' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
