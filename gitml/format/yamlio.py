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
from typing import Any, Final

# Plain scalars: a letter or underscore first, then a conservative alphabet,
# and never one of YAML 1.1's boolean or null words.
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*\Z")
_RESERVED = frozenset(["y", "n", "yes", "no", "on", "off", "true", "false", "null"])
# Characters YAML does not allow raw in a double-quoted scalar (C1 controls,
# line and paragraph separators, BOM, non-characters) or that it folds.
_UNPRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")
# A lone surrogate has no UTF-8 form, and YAML readers refuse its "\udcXX" escape.
_SURROGATE = re.compile("[\ud800-\udfff]")
# json.dumps builds an encoder each call when given options: 0.85 us against 0.2.
_JSON_STRING = json.JSONEncoder(ensure_ascii=False).encode


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
    which reads only what ``dump`` writes: PyYAML would read exactly that too,
    since ``dump``'s output is checked to read back unchanged. Anything else,
    hand-edited or written by another tool, goes to PyYAML's safe loader,
    which raises ``RefusedYaml`` for a key given twice in a mapping or for an
    alias.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        fast = _read_canonical(raw.decode("utf-8"))
    except UnicodeDecodeError:
        fast = None  # PyYAML says why
    if fast is not None:
        return fast
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


# What ``_line`` makes of a line: its indent, whether it opens a list item ("- "),
# its key, and its value: a scalar, one of the markers below, or _OPENS for a
# "key:" whose block follows.
_OPENS, _EMPTY_MAP, _EMPTY_LIST = object(), object(), object()
NOT_SCALAR: Final = object()  # a value text ``dump`` never writes
Line = tuple[int, bool, str, Any]
_KEY_END = re.compile(r'"(?:[^"\\]|\\.)*"')
_SPECIAL: dict[str, Any] = {
    "null": None,
    "true": True,
    "false": False,
    ".nan": math.nan,
    ".inf": math.inf,
    "-.inf": -math.inf,
    "{}": _EMPTY_MAP,
    "[]": _EMPTY_LIST,
}
# Lines already read, each exactly as ``dump`` writes it: most lines of a store's
# records repeat ("status: FINISHED", "  dirty: false"), and a hit costs a lookup.
# At most _LINES_KEPT lines of at most _LINE_KEPT characters (a few MB).
_LINES: dict[str, Line] = {}
_LINES_KEPT = 1 << 16
_LINE_KEPT = 200


def _read_canonical(text: str) -> dict[str, Any] | None:
    """What ``dump`` would have written ``text`` from; None for any other text.

    Only ``dump``'s own output is read, so that ``load`` need not dump the
    result again to prove it (that check cost as much as the reading): each
    line must be what ``dump`` writes for its key and value (``_line``), each
    block where ``dump`` puts it (a map two spaces in, a list's items at its
    key's indent), and no key twice. Lists of anything but non-empty maps are
    left to PyYAML, as is anything else.
    """
    lines = text.split("\n")
    if lines.pop() or not lines:
        return None  # no newline at the end, or nothing at all
    root: dict[str, Any] = {}
    maps: list[tuple[int, dict[str, Any]]] = [(0, root)]  # open maps, by indent
    lists: list[tuple[int, list[Any]]] = []  # open lists, by the indent of their "- "
    opened: tuple[int, dict[str, Any], str] | None = None  # "key:" awaiting its block
    for text_line in lines:
        read = _LINES.get(text_line)
        if read is None:
            read = _line(text_line)
            if read is None:
                return None
            if len(_LINES) < _LINES_KEPT and len(text_line) <= _LINE_KEPT:
                _LINES[text_line] = read
        indent, dash, key, value = read
        if opened is not None:
            at, parent, name = opened
            if dash and indent == at:
                lists.append((at, []))
                parent[name] = lists[-1][1]
            elif not dash and indent == at + 2:
                maps.append((indent, {}))
                parent[name] = maps[-1][1]
            else:
                return None  # "key:" with nothing below it, or below at another indent
            opened = None
        if dash:
            while lists and lists[-1][0] > indent:
                lists.pop()
            if not lists or lists[-1][0] != indent:
                return None
            while maps[-1][0] > indent:
                maps.pop()
            indent += 2
            item: dict[str, Any] = {}
            lists[-1][1].append(item)
            maps.append((indent, item))
        else:
            while lists and lists[-1][0] >= indent:
                lists.pop()
            while maps[-1][0] > indent:
                maps.pop()
        at, mapping = maps[-1]
        if at != indent or key in mapping:
            return None
        if value is _OPENS:
            opened = (indent, mapping, key)
        elif value is _EMPTY_MAP:
            mapping[key] = {}
        elif value is _EMPTY_LIST:
            mapping[key] = []
        else:
            mapping[key] = value
    return None if opened is not None else root


def _line(text: str) -> Line | None:
    """One line as ``dump`` writes it, read; None when ``dump`` would write it otherwise."""
    body = text.lstrip(" ")
    indent = len(text) - len(body)
    dash = body[:2] == "- "
    if dash:
        body = body[2:]
    if body[:1] == '"':
        quoted = _KEY_END.match(body)
        if quoted is None:
            return None
        key_text = quoted.group()
        rest = body[quoted.end() :]
        try:
            key = json.loads(key_text)
        except ValueError:
            return None
    else:
        key_text, colon, rest = body.partition(":")
        key, rest = key_text, colon + rest
    if rest == ":":
        value: Any = _OPENS
    elif rest[:2] == ": " and len(rest) > 2:
        value = _scalar_text(rest[2:])
        if value is NOT_SCALAR:
            return None
    else:
        return None
    try:
        if _string(key) != key_text:
            return None
    except ValueError:  # a lone surrogate: dump refuses it
        return None
    return (indent, dash, key, value)


def scalar(text: str) -> Any:
    """The string, number, boolean or None that ``dump`` writes as ``text``; ``NOT_SCALAR``
    when it writes none so (readers of one record's layout check each value with it).

    Texts already read are kept, as lines are: statuses, users and param values
    repeat across a store's records."""
    value = _SCALARS.get(text, NOT_SCALAR)
    if value is NOT_SCALAR and text:
        value = _scalar_text(text)
        if value is _EMPTY_MAP or value is _EMPTY_LIST:
            return NOT_SCALAR
        if value is not NOT_SCALAR and len(_SCALARS) < _LINES_KEPT and len(text) <= _LINE_KEPT:
            _SCALARS[text] = value
    return value


_SCALARS: dict[str, Any] = {}


def _scalar_text(text: str) -> Any:
    """The scalar ``dump`` writes as ``text``, or NOT_SCALAR: ``dump`` never writes it."""
    special = _SPECIAL.get(text, NOT_SCALAR)
    if special is not NOT_SCALAR:
        return special
    first = text[0]
    value: Any
    if first == '"':
        # Without an escape it is what is between the quotes (json.loads: 3 us).
        value = text[1:-1] if "\\" not in text else _json_string(text)
    elif first.isdigit() or first == "-":
        # ``dump`` writes every float with a "." and no int with one: asking int()
        # first cost a float its ValueError (0.7 us).
        try:
            value = float(text) if "." in text else int(text)
        except ValueError:
            value = text
    else:
        value = text
    try:
        return value if _scalar(value) == text else NOT_SCALAR
    except ValueError:  # a lone surrogate
        return NOT_SCALAR


def _json_string(text: str) -> str | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


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
    quoted = _JSON_STRING(value)
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)
