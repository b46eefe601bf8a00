"""``gitml.sklearn``: MLflow's ``mlflow.sklearn`` for gitml (see ``gitml.models.sklearn``).

Loading a pickle runs code: only load models you trust.
"""

from __future__ import annotations

from gitml.models.sklearn import load_model, log_model, save_model

__all__ = ["load_model", "log_model", "save_model"]
