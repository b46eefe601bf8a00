"""The JSON Schemas in ``schemas/`` (shipped in the wheel as ``gitml/_schemas``).

The schemas are the contract other tools (pre-commit hooks, CI, editors) read;
the pydantic models in ``records.py`` must agree with them, which a test
checks. ``gitml validate`` uses these, so its messages follow the schema.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gitml.errors import InvalidRecord
from gitml.format import layout, yamlio

# Which schema a file is checked against, by its name ...
KINDS = {
    layout.RUN_FILE: "run",
    layout.MANIFEST_FILE: "artifacts",
    layout.EXPERIMENT_FILE: "experiment",
    ".gitml.yaml": "config",
    layout.MODEL_FILE: "registered-model",
    "MLmodel": "MLmodel",
    "MLproject": "MLproject",
}
# ... or by where it lies: a model's versions and a stage branch's declarations.
_PLACES = (
    (re.compile(rf"(^|/){layout.VERSIONS_DIR}/[1-9][0-9]*\.yaml\Z"), "model-version"),
    (re.compile(rf"(^|/){layout.DECLARATIONS_DIR}/[^/]+\.yaml\Z"), "stage"),
)
ALL_KINDS = frozenset([*KINDS.values(), *(kind for _, kind in _PLACES)])


def kind_of(path: str) -> str | None:
    """The schema a file at ``path`` (relative, '/'-separated) follows, or None."""
    for pattern, kind in _PLACES:
        if pattern.search(path):
            return kind
    return KINDS.get(path.rsplit("/", 1)[-1])


def schema_dir() -> Path:
    package = Path(__file__).resolve().parent.parent
    packaged = package / "_schemas"
    return packaged if packaged.is_dir() else package.parent / "schemas"


@functools.cache
def load(kind: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((schema_dir() / f"{kind}.schema.json").read_text())
    return data


@functools.cache
def _validator(kind: str) -> Any:
    """A Draft 2020-12 validator whose ``pattern`` and bounds follow the spec.

    The ``jsonschema`` package checks ``pattern`` with Python's ``re``, where
    ``$`` also matches before a final newline (ECMA 262, which JSON Schema
    specifies, does not), and checks bounds as "error if below", which lets
    NaN (a YAML ``.nan``) through where the spec's "valid if at least" does
    not. Both would make ``gitml validate`` pass records the models reject.
    """
    from jsonschema import Draft202012Validator, ValidationError, validators

    def pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Iterator[Any]:
        if validator.is_type(instance, "string") and not _ecma_regex(patrn).search(instance):
            yield ValidationError(f"{instance!r} does not match {patrn!r}")

    def bound(keyword: str) -> Any:
        check = Draft202012Validator.VALIDATORS[keyword]

        def nan_fails(validator: Any, limit: Any, instance: Any, schema: Any) -> Iterator[Any]:
            if isinstance(instance, float) and math.isnan(instance):
                yield ValidationError(f"nan is not a number that meets {keyword} {limit!r}")
            else:
                yield from check(validator, limit, instance, schema)

        return nan_fails

    keywords = ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")
    cls = validators.extend(  # type: ignore[no-untyped-call]
        Draft202012Validator, {"pattern": pattern, **{k: bound(k) for k in keywords}}
    )
    return cls(load(kind))


@functools.cache
def _ecma_regex(pattern: str) -> re.Pattern[str]:
    """``pattern`` with each unescaped ``$`` outside a class anchored at the very end."""
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if c == "[":
            in_class = True
        elif c == "]":
            in_class = False
        elif c == "$" and not in_class:
            c = r"\Z"
        out.append(c)
        i += 1
    return re.compile("".join(out))


def errors(kind: str, document: Any, *, where: str, path: str) -> list[InvalidRecord]:
    """Every way ``document`` breaks the ``kind`` schema, each naming its field."""
    validator = _validator(kind)
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
