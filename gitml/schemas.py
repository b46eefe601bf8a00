"""The JSON Schemas in ``schemas/`` (shipped in the wheel as ``gitml/_schemas``).

The schemas are the contract other tools (pre-commit hooks, CI, editors) read;
the pydantic models in ``records.py`` must agree with them, which a test
checks. ``gitml validate`` uses these, so its messages follow the schema.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from . import yamlio
from .errors import InvalidRecord

# Which schema a file is checked against, by its name.
KINDS = {
    "run.yaml": "run",
    "artifacts.yaml": "artifacts",
    "experiment.yaml": "experiment",
    ".gitml.yaml": "config",
}


def schema_dir() -> Path:
    packaged = Path(__file__).parent / "_schemas"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "schemas"


@functools.cache
def load(kind: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((schema_dir() / f"{kind}.schema.json").read_text())
    return data


def errors(kind: str, document: Any, *, where: str, path: str) -> list[InvalidRecord]:
    """Every way ``document`` breaks the ``kind`` schema, each naming its field."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(load(kind))
    found = []
    for err in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.path))):
        field = ".".join(str(p) for p in err.absolute_path) or "(document)"
        found.append(InvalidRecord(where, path, field, err.message))
    return found


def check_bytes(kind: str, data: bytes, *, where: str, path: str) -> list[InvalidRecord]:
    try:
        document = yamlio.load(data)
    except Exception as exc:  # any YAML error means the same to the user
        return [InvalidRecord(where, path, "(document)", f"not valid YAML: {exc}")]
    return errors(kind, document, where=where, path=path)
