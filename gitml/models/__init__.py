"""Models: the MLmodel format, signatures, flavors and model URIs.

A model is a directory in MLflow's format (``MLmodel`` and its files), saved
by a flavor module (``gitml.models.sklearn``, ``gitml.models.pyfunc`` for
custom models; each listed in ``gitml.models.flavor.FLAVORS``) and loaded
through ``gitml.models.pyfunc.load_model(uri)``.
Loading a pickle runs code: only load models you trust (see ``pyfunc``).
"""

from __future__ import annotations

from gitml.format.mlmodel import MLmodel
from gitml.models.mlmodel import Model, ModelInfo
from gitml.models.signature import (
    ColSpec,
    ModelSignature,
    ParamSchema,
    ParamSpec,
    Schema,
    TensorSpec,
    infer_signature,
)
from gitml.models.uri import register_resolver, resolve

__all__ = [
    "ColSpec",
    "MLmodel",
    "Model",
    "ModelInfo",
    "ModelSignature",
    "ParamSchema",
    "ParamSpec",
    "Schema",
    "TensorSpec",
    "infer_signature",
    "register_resolver",
    "resolve",
]
