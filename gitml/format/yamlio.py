"""Canonical YAML in and out.

Records are dumped in the key order their model declares, with user-keyed maps
(params, tags) already sorted by the caller, in block style, so that a change
to one value is a one-line diff in a pull request.

``dump`` writes the few shapes records have (maps, lists of maps, strings,
numbers, booleans, null) itself: PyYAML's Python representer spends about
0.7 ms on a run record, a sixth of the 4 ms a whole short run may take,
where this takes about 20 us. Strings are left plain only when YAML 1.1 (what
PyYAML and most tools read) cannot take them for anything else; all others are
double-quoted with JSON's escapes, which YAML shares. ``tests/format/test_yamlio.py``
checks that PyYAML reads back exactly what was dumped. ``load`` is PyYAML's
safe loader, stricter: files may come from anywhere. A key given twice (which
PyYAML resolves by keeping the last) and aliases are refused: records never
need them, and a few hundred bytes of nested aliases expand to gigabytes.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Hashable
from typing import Any

# Plain scalars: a letter or underscore first, then a conservative alphabet,
# and never one of YAML 1.1's boolean or null words.
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*\Z")
_RESERVED = frozenset(["y", "n", "yes", "no", "on", "off", "true", "false", "null"])
# Characters YAML does not allow raw in a double-quoted scalar (C1 controls,
# line and paragraph separators, BOM, non-characters) or that it folds.
_UNPRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")
# A lone surrogate has no UTF-8 form, and YAML readers refuse its "\udcXX" escape.
_SURROGATE = re.compile("[\ud800-\udfff]")


def dump(data: Any) -> bytes:
    """Serialise a record (maps, lists of maps and scalars) as UTF-8 YAML."""
    lines: list[str] = []
    if isinstance(data, dict):
        _mapping(data, 0, lines)
    else:
        raise TypeError(f"a record is a mapping, got {type(data).__name__}")
    return ("\n".join(lines) + "\n").encode("utf-8")


class RefusedYaml(ValueError):
    """YAML that PyYAML would read but a record may not hold: a key twice, an alias."""


def load(data: bytes | str) -> Any:
    """Parse YAML safely; never constructs arbitrary Python objects.

    Files gitml wrote itself are read by ``_read_canonical``, 20 times faster
    than PyYAML (whose Python constructor dominated indexing 100,000 runs),
    and the result is kept only when dumping it gives back the very same
    bytes: then PyYAML would have read exactly that too, since ``dump``'s
    output is checked to read back unchanged. Anything else, hand-edited or
    written by another tool, goes to PyYAML's safe loader, which raises
    ``RefusedYaml`` for a key given twice in a mapping or for an alias.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        fast = _read_canonical(raw.decode("utf-8"))
        if fast is not None and dump(fast) == raw:
            return fast
    except (ValueError, IndexError, UnicodeDecodeError):
        # Not gitml's canonical text, or text gitml refuses to write (a lone
        # surrogate): PyYAML reads it, and the record's checks name the field.
        pass
    import yaml  # only here: importing PyYAML costs 20 ms at every start

    loader = _record_loader(c_parser=_nesting_bound(raw) < _C_NESTING)
    # An alias is written "*name", so text without a "*" has none and skips
    # the scan. The scan reads events only, before any alias is expanded.
    if b"*" in raw:
        for event in yaml.parse(data, Loader=loader):
            if isinstance(event, yaml.AliasEvent):
                assert event.start_mark is not None  # parsers mark every event
                raise RefusedYaml(
                    f"line {event.start_mark.line + 1}: alias *{event.anchor}: "
                    "records take no anchors and aliases; write the value out"
                )
    return yaml.load(data, Loader=loader)


# PyYAML's C loader builds nested collections by C recursion with no limit:
# "- " * 30_000 (or "[" * 100_000) overflows the stack and kills the process
# with SIGSEGV, where the pure-Python loader raises RecursionError. Documents
# that could nest deeper than this go to the pure-Python loader.
_C_NESTING = 5000


def _nesting_bound(raw: bytes) -> int:
    """An upper bound on how deeply ``raw`` nests collections.

    Each level opens with a flow bracket, a "-" or "?" indicator, or one more
    column of indentation (a block mapping), so these bound the depth.
    """
    widest = max((len(line) for line in raw.splitlines()), default=0)
    return sum(raw.count(c) for c in (b"[", b"{", b"-", b"?")) + widest


@functools.cache
def _record_loader(c_parser: bool) -> type[Any]:
    """PyYAML's safe loader refusing duplicate keys, on its C parser (when PyYAML was
    built with libyaml) if ``c_parser``."""
    import yaml
    from yaml.constructor import SafeConstructor

    class UniqueKeys(SafeConstructor):
        def construct_mapping(
            self, node: yaml.MappingNode, deep: bool = False
        ) -> dict[Hashable, Any]:
            mapping = super().construct_mapping(node, deep)
            if len(mapping) != len(node.value):
                _refuse_duplicate(self, node)
            return mapping

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader) if c_parser else yaml.SafeLoader
    return type("RecordLoader", (UniqueKeys, base), {})


def _refuse_duplicate(constructor: Any, node: Any) -> None:
    """Raise for the first key ``node`` (a mapping with fewer keys than entries) repeats."""
    lines: dict[Hashable, int] = {}
    for key_node, _ in node.value:
        key = constructor.construct_object(key_node)  # already built: the same object
        line = key_node.start_mark.line + 1
        if key in lines:
            where = f"on line {line}" if lines[key] == line else f"(lines {lines[key]} and {line})"
            raise RefusedYaml(f"key {key!r} appears twice {where}")
        lines[key] = line


# One line of what ``dump`` writes: indent, an optional "- ", a key (plain, or
# double-quoted without a colon inside), then ": value" or ":" alone.
_LINE = re.compile(r'^( *)(- )?("[^"\n:]*"|[^"\n:][^\n:]*):(?: (.+))?$', re.M)
_SPECIAL: dict[str, Any] = {
    "null": None,
    "true": True,
    "false": False,
    ".nan": math.nan,
    ".inf": math.inf,
    "-.inf": -math.inf,
}


def _read_canonical(text: str) -> dict[str, Any] | None:
    """Read what ``dump`` writes (and nothing more); None when it is something else.

    Its mistakes on other input cost nothing: ``load`` keeps the result only
    when dumping it reproduces the input byte for byte.
    """
    lines = _LINE.findall(text)
    if len(lines) != text.count("\n"):
        return None  # a line this reader does not know
    root: dict[str, Any] = {}
    stack: list[tuple[int, dict[str, Any]]] = [(0, root)]
    opened: tuple[int, dict[str, Any], str] | None = None  # "key:" awaiting its block
    sequence: tuple[int, list[Any]] | None = None  # the list "- " items go to
    for spaces, dash, key_text, value in lines:
        indent = len(spaces)
        if dash:
            if opened is not None and indent == opened[0]:
                sequence = (indent, [])
                opened[1][opened[2]] = sequence[1]
                opened = None
            elif sequence is None or indent != sequence[0]:
                return None
            item: dict[str, Any] = {}
            sequence[1].append(item)
            while stack[-1][0] > indent:
                stack.pop()
            indent += 2
            stack.append((indent, item))
        elif opened is not None:
            if indent > opened[0]:
                nested: dict[str, Any] = {}
                opened[1][opened[2]] = nested
                stack.append((indent, nested))
            elif opened[2] not in opened[1]:
                return None  # "key:" with nothing below it
            opened = None
        while stack[-1][0] > indent:
            stack.pop()
        depth, mapping = stack[-1]
        if depth != indent:
            return None
        key = json.loads(key_text) if key_text[0] == '"' else key_text
        if value:
            mapping[key] = _scalar_text(value)
        else:
            opened = (indent, mapping, key)
    if opened is not None and opened[2] not in opened[1]:
        return None
    return root


def _scalar_text(text: str) -> Any:
    first = text[0]
    if first == '"':
        # Without an escape it is what is between the quotes (json.loads: 3 us); a
        # quote inside, or none at the end, makes the dump differ and ``load`` refuse.
        return text[1:-1] if "\\" not in text else json.loads(text)
    if first.isdigit() or first == "-":
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            return text
    if first == "{" and text == "{}":
        return {}
    if first == "[" and text == "[]":
        return []
    return _SPECIAL.get(text, text)


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
        if isinstance(item, dict | list) and item:
            nested: list[str] = []
            if isinstance(item, dict):
                _mapping(item, indent + 2, nested)
            else:
                _sequence(item, indent + 2, nested)
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


@functools.lru_cache(maxsize=8192)  # keys and values repeat across a store's records
def _string(value: str) -> str:
    if _PLAIN.match(value) and value.lower() not in _RESERVED:
        return value
    if _SURROGATE.search(value):
        raise ValueError(f"cannot write {value!r} to a record: it is not valid Unicode text")
    quoted = json.dumps(value, ensure_ascii=False)
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)
