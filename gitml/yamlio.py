"""Canonical YAML in and out.

Records are dumped in the key order their model declares, with user-keyed maps
(params, tags) already sorted by the caller, in block style, so that a change
to one value is a one-line diff in a pull request.

``dump`` writes the few shapes records have (maps, lists of maps, strings,
numbers, booleans, null) itself: PyYAML's Python representer spends about
0.7 ms on a run record, a sixth of issue 2's budget for a whole short run,
where this takes about 20 us. Strings are left plain only when YAML 1.1 (what
PyYAML and most tools read) cannot take them for anything else; all others are
double-quoted with JSON's escapes, which YAML shares. ``tests/test_yamlio.py``
checks that PyYAML reads back exactly what was dumped. ``load`` is PyYAML's
safe loader: files may come from anywhere.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import yaml

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Plain scalars: a letter or underscore first, then a conservative alphabet,
# and never one of YAML 1.1's boolean or null words.
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*\Z")
_RESERVED = frozenset(["y", "n", "yes", "no", "on", "off", "true", "false", "null"])
# Characters YAML does not allow raw in a double-quoted scalar (C1 controls,
# line and paragraph separators, BOM, non-characters) or that it folds.
_UNPRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")


def dump(data: Any) -> bytes:
    """Serialise a record (maps, lists of maps and scalars) as UTF-8 YAML."""
    lines: list[str] = []
    if isinstance(data, dict):
        _mapping(data, 0, lines)
    else:
        raise TypeError(f"a record is a mapping, got {type(data).__name__}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def load(data: bytes | str) -> Any:
    """Parse YAML safely; never constructs arbitrary Python objects."""
    return yaml.load(data, Loader=_Loader)


def _mapping(data: dict[str, Any], indent: int, lines: list[str]) -> None:
    pad = " " * indent
    for key, value in data.items():
        head = f"{pad}{_string(str(key))}:"
        if isinstance(value, dict):
            if value:
                lines.append(head)
                _mapping(value, indent + 2, lines)
            else:
                lines.append(f"{head} {{}}")
        elif isinstance(value, list):
            if value:
                lines.append(head)
                _sequence(value, indent, lines)
            else:
                lines.append(f"{head} []")
        else:
            lines.append(f"{head} {_scalar(value)}")


def _sequence(items: list[Any], indent: int, lines: list[str]) -> None:
    pad = " " * indent
    for item in items:
        if isinstance(item, dict) and item:
            nested: list[str] = []
            _mapping(item, indent + 2, nested)
            nested[0] = f"{pad}- {nested[0][indent + 2 :]}"
            lines.extend(nested)
        elif isinstance(item, dict | list):
            lines.append(f"{pad}- {'{}' if isinstance(item, dict) else '[]'}")
        else:
            lines.append(f"{pad}- {_scalar(item)}")


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        return _string(value)
    raise TypeError(f"cannot write {type(value).__name__} {value!r} to a record")


def _float(value: float) -> str:
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    # YAML 1.1 wants a dot in the mantissa and a signed exponent ("1.0e-05").
    mantissa, _, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    if exponent and exponent[0] not in "+-":
        exponent = "+" + exponent
    return f"{mantissa}e{exponent}" if exponent else mantissa


def _string(value: str) -> str:
    if _PLAIN.match(value) and value.lower() not in _RESERVED:
        return value
    quoted = json.dumps(value, ensure_ascii=False)
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)
