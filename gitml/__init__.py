"""gitml: the machine-learning lifecycle with Git as the database.

``import gitml`` stays cheap (no dulwich, no pydantic) because scripts and the
CLI import it on every start; each name below is loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gitml._version import __version__

if TYPE_CHECKING:
    from gitml.errors import (
        Conflict,
        Corrupt,
        GitmlError,
        InvalidInput,
        InvalidRecord,
        NotARepository,
        NotFound,
    )
    from gitml.format.records import Experiment, ModelVersion, RegisteredModel, Run
    from gitml.registry.versions import Registry, register_model
    from gitml.tracking.client import Client
    from gitml.tracking.entities import Metric, Param, RunTag
    from gitml.tracking.fluent import (
        ActiveRun,
        active_run,
        end_run,
        get_run,
        get_tracking_uri,
        last_active_run_id,
        log_artifact,
        log_artifacts,
        log_dict,
        log_figure,
        log_metric,
        log_metrics,
        log_param,
        log_params,
        log_text,
        search_runs,
        set_experiment,
        set_tag,
        set_tags,
        set_tracking_uri,
        start_run,
    )

_FLUENT = (
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
)
_ERRORS = (
    "Conflict",
    "Corrupt",
    "GitmlError",
    "InvalidInput",
    "InvalidRecord",
    "NotARepository",
    "NotFound",
)
_WHERE: dict[str, str] = {
    **{name: "gitml.tracking.fluent" for name in _FLUENT},
    **{name: "gitml.errors" for name in _ERRORS},
    "Client": "gitml.tracking.client",
    "Metric": "gitml.tracking.entities",
    "Param": "gitml.tracking.entities",
    "RunTag": "gitml.tracking.entities",
    "Experiment": "gitml.format.records",
    "Run": "gitml.format.records",
    "ModelVersion": "gitml.format.records",
    "RegisteredModel": "gitml.format.records",
    "Registry": "gitml.registry.versions",
    "register_model": "gitml.registry.versions",
}

__all__ = [
    "ActiveRun",
    "Client",
    "Conflict",
    "Corrupt",
    "Experiment",
    "GitmlError",
    "InvalidInput",
    "InvalidRecord",
    "Metric",
    "ModelVersion",
    "NotARepository",
    "NotFound",
    "Param",
    "RegisteredModel",
    "Registry",
    "Run",
    "RunTag",
    "__version__",
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
    "register_model",
    "search_runs",
    "set_experiment",
    "set_tag",
    "set_tags",
    "set_tracking_uri",
    "start_run",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'gitml' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
