"""``gitml.pytorch``: MLflow's ``mlflow.pytorch`` for gitml (see ``gitml.models.pytorch``).

Needs the ``pytorch`` extra (``pip install 'gitml[pytorch]'``); torch is imported
only when a model is saved or loaded. Loading a pickle runs code: only load
models you trust.
"""

from __future__ import annotations

from gitml.models.pytorch import load_model, log_model, save_model

__all__ = ["load_model", "log_model", "save_model"]
