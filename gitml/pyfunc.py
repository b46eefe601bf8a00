"""``gitml.pyfunc``: MLflow's ``mlflow.pyfunc`` for gitml (see ``gitml.models.pyfunc``).

Loading a pickle runs code: only load models you trust.
"""

from __future__ import annotations

from gitml.models.pyfunc import (
    PyFuncModel,
    PythonModel,
    PythonModelContext,
    load_model,
    log_model,
    save_model,
)

__all__ = [
    "PyFuncModel",
    "PythonModel",
    "PythonModelContext",
    "load_model",
    "log_model",
    "save_model",
]
