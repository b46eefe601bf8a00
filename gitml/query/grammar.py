"""MLflow's search grammar for runs: filter strings and order_by clauses, parsed to a small AST.

A filter is comparisons joined by ``AND`` (MLflow's syntax) and, beyond MLflow,
by ``OR`` and grouped with parentheses (``AND`` binds tighter than ``OR``)::

    metrics.rmse < 0.5 and params.alpha = '0.1'
    (tags.team = 'growth' OR tags.team = 'core') AND attributes.status = 'FINISHED'

An identifier is ``<prefix>.<key>`` or a bare attribute name:

==========  ==============================================  ==========================
kind        prefixes                                        keys
==========  ==============================================  ==========================
metric      ``metric``, ``metrics``                         any
param       ``param``, ``params``, ``parameter(s)``         any
tag         ``tag``, ``tags``                               any
attribute   ``attribute(s)``, ``attr``, ``run``, none       see ``FILTER_ATTRIBUTES``
dataset     ``dataset``, ``datasets``                       ``name``, ``digest``, ``context``
==========  ==============================================  ==========================

Prefixes are case-sensitive, as in MLflow. A key with characters other than
letters, digits, ``_`` and ``.`` is quoted with backticks, double or single
quotes (``metrics.`log-loss```, ``params."learning rate"``, ``metrics.'f1
score'``, as MLflow accepts all three); a quote inside is doubled.
Bare keys may start with a digit (MLflow asks for backticks there).
Attribute aliases: ``created``/``Created`` for ``start_time``; ``run name``,
``Run name``, ``Run Name`` for ``run_name`` (filters only, as in MLflow).

Values: numbers for metrics and for ``start_time``/``end_time``; every other
value is a string in single or double quotes (``'it''s'`` holds a quote);
``IN``/``NOT IN`` take a non-empty list of quoted strings. Operators per kind
are ``OPERATORS`` below; keywords are case-insensitive. ``IS NULL`` and
``IS NOT NULL`` (metrics, params, tags, ``end_time``) are gitml's, as are
``OR`` and parentheses.

Errors are ``FilterSyntaxError``: what was expected, the text, and a caret
under the offending position. The parser is a hand-written scanner (no
backtracking regular expressions) and caps nesting at ``MAX_DEPTH``, so any
string gives an AST or that error.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from gitml.errors import InvalidInput

Kind = Literal["metric", "param", "tag", "attribute", "dataset"]

__all__ = [
    "And",
    "Comparison",
    "Expr",
    "FilterSyntaxError",
    "Identifier",
    "Kind",
    "Or",
    "OrderKey",
    "parse_filter",
    "parse_order_by",
]


@dataclass(frozen=True)
class Identifier:
    """What a comparison or an ordering looks at; attribute keys are canonical."""

    kind: Kind
    key: str


@dataclass(frozen=True)
class Comparison:
    """``ident op value``: value is a float for numeric kinds, a str for string
    kinds, a tuple of str for ``IN``/``NOT IN`` and None for ``IS [NOT] NULL``."""

    ident: Identifier
    op: str
    value: str | float | tuple[str, ...] | None


@dataclass(frozen=True)
class And:
    parts: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    parts: tuple[Expr, ...]


Expr: TypeAlias = Comparison | And | Or


@dataclass(frozen=True)
class OrderKey:
    ident: Identifier
    ascending: bool


class FilterSyntaxError(InvalidInput):
    """A filter or order_by clause that does not parse.

    ``text`` is the filter (or the one order_by clause) and ``position`` the
    0-based character offset the caret points at (``len(text)`` for its end).
    """

    def __init__(self, expected: str, text: str, position: int) -> None:
        self.expected = expected
        self.text = text
        self.position = position
        shown = "".join(ch if ch.isprintable() else " " for ch in text)
        super().__init__(f"{expected}\n  {shown}\n  {' ' * position}^")

    def __reduce__(self) -> tuple[type[FilterSyntaxError], tuple[str, str, int]]:
        return (type(self), (self.expected, self.text, self.position))


# -- the vocabulary -----------------------------------------------------------------

PREFIXES: dict[str, Kind] = {
    "metric": "metric",
    "metrics": "metric",
    "param": "param",
    "params": "param",
    "parameter": "param",
    "parameters": "param",
    "tag": "tag",
    "tags": "tag",
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
    "run": "attribute",
    "dataset": "dataset",
    "datasets": "dataset",
}

STRING_ATTRIBUTES = frozenset({"artifact_uri", "run_id", "run_name", "status", "user_id"})
NUMERIC_ATTRIBUTES = frozenset({"end_time", "start_time"})
NULLABLE_ATTRIBUTES = frozenset({"end_time"})
FILTER_ATTRIBUTES = STRING_ATTRIBUTES | NUMERIC_ATTRIBUTES
ORDER_BY_ATTRIBUTES = FILTER_ATTRIBUTES
DATASET_KEYS = frozenset({"context", "digest", "name"})

FILTER_ATTRIBUTE_ALIASES = {
    "created": "start_time",
    "Created": "start_time",
    "run name": "run_name",
    "Run name": "run_name",
    "Run Name": "run_name",
}
ORDER_BY_ATTRIBUTE_ALIASES = {"created": "start_time", "Created": "start_time"}

NUMERIC_OPS = ("=", "!=", "<", "<=", ">", ">=")
STRING_OPS = ("=", "!=", "LIKE", "ILIKE")
LIST_OPS = ("IN", "NOT IN")
NULL_OPS = ("IS NULL", "IS NOT NULL")

OPERATORS: dict[str, tuple[str, ...]] = {
    "metric": NUMERIC_OPS + NULL_OPS,
    "param": STRING_OPS + NULL_OPS,
    "tag": STRING_OPS + NULL_OPS,
    "dataset": STRING_OPS + LIST_OPS,
    "attribute": STRING_OPS,
    "attribute.run_id": STRING_OPS + LIST_OPS,
    "attribute.start_time": NUMERIC_OPS,
    "attribute.end_time": NUMERIC_OPS + NULL_OPS,
}

MAX_DEPTH = 100
"""Deepest nesting of parentheses a filter may have."""

_KIND_NAMES = {
    "metric": "metrics",
    "param": "params",
    "tag": "tags",
    "attribute": "attributes",
    "dataset": "datasets",
}


def operators(ident: Identifier) -> tuple[str, ...]:
    """The operators MLflow (plus gitml's ``IS [NOT] NULL``) allows on ``ident``."""
    if ident.kind == "attribute":
        return OPERATORS.get(f"attribute.{ident.key}", OPERATORS["attribute"])
    return OPERATORS[ident.kind]


def is_numeric(ident: Identifier) -> bool:
    return ident.kind == "metric" or (ident.kind == "attribute" and ident.key in NUMERIC_ATTRIBUTES)


# -- the scanner --------------------------------------------------------------------

_WS = re.compile(r"\s*")
_WORD = re.compile(r"\w+")
_BARE_KEY = re.compile(r"\w+(?:\.\w+)*")
_NUMBER = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_SYMBOL_OPS = ("!=", "<=", ">=", "=", "<", ">")
_WRONG_OPS = {"==": "=", "<>": "!="}
_QUOTES = ("'", '"', "`")
_KEYWORDS = frozenset({"AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "ILIKE", "ASC", "DESC"})


class _Parser:
    def __init__(self, text: str, noun: str) -> None:
        self.text = text
        self.pos = 0
        self.noun = noun  # "filter" or "order_by clause"

    # errors

    def error(self, expected: str, position: int | None = None) -> FilterSyntaxError:
        at = self.pos if position is None else position
        return FilterSyntaxError(expected, self.text, at)

    def found(self, position: int | None = None) -> str:
        at = self.pos if position is None else position
        if at >= len(self.text):
            return f"end of {self.noun}"
        word = _WORD.match(self.text, at)
        if word:
            return repr(word.group()[:40])
        return repr(self.text[at])

    def expected(self, what: str, position: int | None = None) -> FilterSyntaxError:
        return self.error(f"expected {what}, found {self.found(position)}", position)

    # low-level reading

    def skip_ws(self) -> None:
        match = _WS.match(self.text, self.pos)
        assert match is not None  # \s* always matches
        self.pos = match.end()

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def keyword(self, *words: str) -> str | None:
        """The upper-cased keyword at the cursor (and move past it) if it is one of ``words``."""
        match = _WORD.match(self.text, self.pos)
        if match and match.group().upper() in words:
            self.pos = match.end()
            return match.group().upper()
        return None

    def quoted(self) -> str:
        """A quoted run of text starting at the cursor; a doubled quote stands for one."""
        start = self.pos
        quote = self.text[start]
        pieces: list[str] = []
        i = start + 1
        while True:
            end = self.text.find(quote, i)
            if end < 0:
                kind = "key" if quote == "`" else "string"
                raise self.error(f"unclosed {kind}: no closing {quote}", start)
            pieces.append(self.text[i:end])
            if self.text.startswith(quote * 2, end):
                pieces.append(quote)
                i = end + 2
                continue
            self.pos = end + 1
            return "".join(pieces)

    # identifiers

    def identifier(self, for_order_by: bool) -> tuple[Identifier, int]:
        """An identifier and the position it starts at."""
        start = self.pos
        char = self.peek()
        prefix: str | None = None
        if char in ("`", '"'):
            name = self.quoted()
            if char == "`" and self.peek() == ".":
                prefix = name
        else:
            word = _WORD.match(self.text, self.pos)
            if not word:
                raise self.expected(
                    "an identifier such as metrics.<key>, params.<key>, tags.<key> "
                    "or attributes.<key>"
                )
            self.pos = word.end()
            name = word.group()
            if self.peek() == ".":
                prefix = name
        if prefix is None:
            if char not in ("`", '"') and name.upper() in _KEYWORDS:
                raise self.expected(
                    "an identifier such as metrics.<key>, params.<key>, tags.<key> "
                    "or attributes.<key>",
                    start,
                )
            return self.attribute(name, start, for_order_by), start

        kind = PREFIXES.get(prefix)
        if kind is None:
            raise self.error(
                f"unknown identifier type '{_short(prefix)}': expected metrics, params, tags, "
                "attributes or datasets",
                start,
            )
        self.pos += 1  # the dot
        key_start = self.pos
        char = self.peek()
        if char in _QUOTES:
            key = self.quoted()
        else:
            bare = _BARE_KEY.match(self.text, self.pos)
            if not bare:
                raise self.expected(f"a key after '{_short(prefix)}.'")
            self.pos = bare.end()
            key = bare.group()
        if not key:
            raise self.error("expected a key, found an empty quoted key", key_start)
        if kind == "attribute":
            return self.attribute(key, key_start, for_order_by), start
        if kind == "dataset":
            if for_order_by:
                raise self.error("datasets cannot be used in order_by", start)
            if key not in DATASET_KEYS:
                raise self.error(
                    f"unknown dataset field '{_short(key)}': expected one of "
                    f"{', '.join(sorted(DATASET_KEYS))}",
                    key_start,
                )
        return Identifier(kind, key), start

    def attribute(self, name: str, position: int, for_order_by: bool) -> Identifier:
        aliases = ORDER_BY_ATTRIBUTE_ALIASES if for_order_by else FILTER_ATTRIBUTE_ALIASES
        valid = ORDER_BY_ATTRIBUTES if for_order_by else FILTER_ATTRIBUTES
        key = aliases.get(name, name)
        if key not in valid:
            raise self.error(
                f"unknown attribute '{_short(name)}': expected one of {', '.join(sorted(valid))}, "
                "or a prefixed name such as metrics.<key>, params.<key> or tags.<key>",
                position,
            )
        return Identifier("attribute", key)

    # filters

    def filter(self) -> Expr:
        self.skip_ws()
        expr = self.disjunction(0)
        self.skip_ws()
        if not self.at_end():
            if self.peek() == ")":
                raise self.error("unbalanced ')': no '(' to close")
            raise self.expected("AND, OR or the end of the filter")
        return expr

    def disjunction(self, depth: int) -> Expr:
        parts = [self.conjunction(depth)]
        while True:
            self.skip_ws()
            if not self.keyword("OR"):
                break
            self.skip_ws()
            parts.append(self.conjunction(depth))
        return _combine(Or, parts)

    def conjunction(self, depth: int) -> Expr:
        parts = [self.primary(depth)]
        while True:
            self.skip_ws()
            if not self.keyword("AND"):
                break
            self.skip_ws()
            parts.append(self.primary(depth))
        return _combine(And, parts)

    def primary(self, depth: int) -> Expr:
        if self.peek() != "(":
            return self.comparison()
        opened = self.pos
        if depth >= MAX_DEPTH:
            raise self.error(f"parentheses nested deeper than {MAX_DEPTH} levels", opened)
        self.pos += 1
        self.skip_ws()
        expr = self.disjunction(depth + 1)
        self.skip_ws()
        if self.at_end():
            raise self.error("unclosed '(': expected ')'", opened)
        if self.peek() != ")":
            raise self.expected("AND, OR or ')'")
        self.pos += 1
        return expr

    def comparison(self) -> Comparison:
        ident, start = self.identifier(for_order_by=False)
        shown = self.text[start : self.pos]
        self.skip_ws()
        op_at = self.pos
        op = self.operator(shown)
        allowed = operators(ident)
        if op not in allowed:
            raise self.error(
                f"operator {op} is not supported for {_describe(ident)}: use {', '.join(allowed)}",
                op_at,
            )
        if op in NULL_OPS:
            return Comparison(ident, op, None)
        self.skip_ws()
        if op in LIST_OPS:
            return Comparison(ident, op, self.string_list())
        if is_numeric(ident):
            return Comparison(ident, op, self.number(ident, shown))
        return Comparison(ident, op, self.string(ident, shown))

    def operator(self, shown: str) -> str:
        text = self.text
        for wrong, right in _WRONG_OPS.items():
            if text.startswith(wrong, self.pos):
                raise self.error(f"unknown operator '{wrong}': use '{right}'")
        for symbol in _SYMBOL_OPS:
            if text.startswith(symbol, self.pos):
                self.pos += len(symbol)
                return symbol
        word = self.keyword("LIKE", "ILIKE", "IN", "NOT", "IS")
        if word == "NOT":
            self.skip_ws()
            if not self.keyword("IN"):
                raise self.expected("IN after NOT")
            return "NOT IN"
        if word == "IS":
            self.skip_ws()
            negated = self.keyword("NOT") is not None
            self.skip_ws()
            if not self.keyword("NULL"):
                raise self.expected("NULL after IS NOT" if negated else "NULL or NOT NULL after IS")
            return "IS NOT NULL" if negated else "IS NULL"
        if word is not None:
            return word
        message = (
            "expected a comparison operator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN, "
            f"IS NULL, IS NOT NULL) after {shown}, found {self.found()}"
        )
        if self.peek() and not self.peek().isspace() and not self.text[self.pos - 1].isspace():
            message += "; quote keys with special characters in backticks: metrics.`log-loss`"
        raise self.error(message)

    def number(self, ident: Identifier, shown: str) -> float:
        start = self.pos
        match = _NUMBER.match(self.text, self.pos)
        after = match.end() if match else start
        if match and (after >= len(self.text) or not _is_number_char(self.text[after])):
            self.pos = after
            return float(match.group())
        if ident.kind == "metric":
            example = f"metrics compare with numbers, e.g. {shown} < 0.5"
        else:
            example = f"{ident.key} compares with milliseconds since the epoch"
        if self.peek() in _QUOTES:
            raise self.error(f"expected a number, found a quoted value: {example}", start)
        raise self.expected(f"a number ({example})", start)

    def string(self, ident: Identifier, shown: str) -> str:
        char = self.peek()
        if char in ("'", '"'):
            return self.quoted()
        start = self.pos
        example = f"{shown} = 'value'"
        if char == "`":
            raise self.error(
                f"backticks quote keys, not values: use single or double quotes, e.g. {example}",
                start,
            )
        raise self.expected(
            f"a quoted string ({_describe(ident)} compare with strings, e.g. {example})", start
        )

    def string_list(self) -> tuple[str, ...]:
        opened = self.pos
        if self.peek() != "(":
            raise self.expected("'(' starting a list of quoted strings, e.g. ('a', 'b')")
        self.pos += 1
        items: list[str] = []
        while True:
            self.skip_ws()
            char = self.peek()
            if char == ")" and items:
                self.pos += 1
                return tuple(items)
            if char == ")":
                raise self.error("expected a non-empty list of quoted strings")
            if not char:
                raise self.error("unclosed '(': expected ')'", opened)
            if char not in ("'", '"'):
                raise self.expected("a quoted string in the list")
            items.append(self.quoted())
            self.skip_ws()
            char = self.peek()
            if char == ",":
                self.pos += 1
            elif char == ")":
                self.pos += 1
                return tuple(items)
            elif not char:
                raise self.error("unclosed '(': expected ')'", opened)
            else:
                raise self.expected("',' or ')'")

    # order_by

    def order_key(self) -> tuple[OrderKey, int]:
        self.skip_ws()
        ident, start = self.identifier(for_order_by=True)
        self.skip_ws()
        ascending = True
        direction = self.keyword("ASC", "DESC")
        if direction is not None:
            ascending = direction == "ASC"
            self.skip_ws()
        if not self.at_end():
            raise self.expected(
                "ASC, DESC or the end of the clause"
                if direction is None
                else "the end of the clause"
            )
        return OrderKey(ident, ascending), start


def _short(name: str) -> str:
    return name if len(name) <= 40 else name[:37] + "..."


def _is_number_char(char: str) -> bool:
    return char == "." or char.isalnum() or char == "_"


def _describe(ident: Identifier) -> str:
    if ident.kind == "attribute":
        return f"attribute {ident.key}"
    return _KIND_NAMES[ident.kind]


def _combine(node: type[And] | type[Or], parts: list[Expr]) -> Expr:
    if len(parts) == 1:
        return parts[0]
    flat: list[Expr] = []
    for part in parts:
        flat.extend(part.parts if isinstance(part, node) else (part,))
    return node(tuple(flat))


# -- the public entry points --------------------------------------------------------


def parse_filter(text: str | None) -> Expr | None:
    """The AST of an MLflow filter string; None for None, empty or blank text."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise FilterSyntaxError("expected a filter string", repr(text), 0)
    if not text.strip():
        return None
    return _Parser(text, "filter").filter()


def parse_order_by(clauses: Sequence[str] | None) -> list[OrderKey]:
    """MLflow order_by clauses (``"<identifier> [ASC|DESC]"``) as keys, in order.

    A field may appear once (``created`` and ``start_time`` are one field);
    errors show the offending clause. A lone string is taken as one clause.
    """
    if clauses is None:
        return []
    if isinstance(clauses, str):
        clauses = [clauses]
    keys: list[OrderKey] = []
    seen: set[Identifier] = set()
    for clause in clauses:
        if not isinstance(clause, str):
            raise FilterSyntaxError("expected an order_by clause string", repr(clause), 0)
        key, start = _Parser(clause, "order_by clause").order_key()
        if key.ident in seen:
            raise FilterSyntaxError(
                "order_by names this field twice; each field may appear once", clause, start
            )
        seen.add(key.ident)
        keys.append(key)
    return keys
