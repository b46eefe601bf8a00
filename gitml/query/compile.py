"""The grammar's AST compiled to parameterised SQLite over the query index.

The SQL reads the index's tables with the runs table aliased ``r``::

    SELECT ... FROM runs r WHERE <compile_where> ORDER BY <compile_order> LIMIT ...

with the parameters of the WHERE part first, then those of the ORDER BY part.
User text (keys, values, patterns) only ever travels as ``?`` parameters.

Semantics, as MLflow's stores have them:

- A comparison on a metric, param or tag the run lacks is false, ``!=`` and
  ``NOT IN`` included; ``IS NULL`` (gitml's) is true exactly when it is missing.
  ``end_time`` is NULL while a run is live: comparisons on it are false then.
- A NaN metric (stored as NULL, ``is_nan`` 1) satisfies ``!=`` and no other
  numeric comparison, as in MLflow's SQL store; +/-inf compare as infinities.
- ``LIKE`` is case-sensitive, ``ILIKE`` case-insensitive (ASCII letters only,
  as SQLite's LIKE folds case); both match the whole value, ``%`` any run of
  characters, ``_`` one character, and ``\\`` makes the next character literal
  (``'100\\%'``). LIKE compiles to GLOB, so no pragma or registered function
  is needed.
- ``datasets.*`` comparisons match nothing: gitml records no dataset inputs,
  and MLflow matches a run when any of its dataset inputs matches.
- Tags MLflow sets on every run and gitml keeps as run columns
  (``MIRRORED_TAGS``, e.g. ``mlflow.runName``) read the tag when one was set
  and the column otherwise.
- ``attributes.artifact_uri`` is ``runs:/<run_id>/`` (``ARTIFACT_URI_SQL``).

Ordering puts, for every key and both directions, present values first, then
NaN metrics, then runs without the value; then MLflow's tie-breakers,
``start_time DESC`` (unless ordered on already) and ``run_id ASC``. Each key is
one term that leans on SQLite's order of types (NULL < numbers < text < blobs):
a NaN sorts as ``''`` and a missing value as ``X''``.

Shapes, for speed over 100,000 runs: ``=`` and ``IN`` on params and tags are
``r.n IN (SELECT run ... WHERE key = ? AND value = ?)``, which SQLite can
start from through the ``(key, value)`` index; every other comparison on
metrics, params and tags is an ``EXISTS`` probe of the ``(run, key)`` primary
key, which costs at most one probe per run and stops with a LIMIT. (``n`` is
a run's number in the index: the rows of params, tags and metrics name their
run by it.) Select ``r.run_id`` alone in the sorted query when ordering on
anything but the indexed default: SQLite's sorter carries every selected
column of every matching run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from gitml.errors import InvalidInput
from gitml.query.grammar import And, Comparison, Expr, Identifier, Or, OrderKey

__all__ = [
    "compile_order",
    "compile_value",
    "compile_where",
    "like_to_glob",
    "like_to_sqlite_like",
]

ARTIFACT_URI_SQL = "('runs:/' || r.run_id || '/')"

ATTRIBUTE_COLUMNS: dict[str, str] = {
    "run_id": "r.run_id",
    "run_name": "r.name",
    "status": "r.status",
    "start_time": "r.start_time",
    "end_time": "r.end_time",
    "user_id": "r.user",
    "experiment_id": "r.experiment_id",
    "lifecycle_stage": "r.lifecycle_stage",
    "artifact_uri": ARTIFACT_URI_SQL,
}

MIRRORED_TAGS: dict[str, str] = {
    "mlflow.runName": "r.name",
    "mlflow.user": "r.user",
    "mlflow.parentRunId": "r.parent_run_id",
    # The index keeps the commit's 20 bytes; hex(NULL) is '', which NULLIF undoes.
    "mlflow.source.git.commit": "NULLIF(lower(hex(r.source_commit)), '')",
}

_NULLABLE_ATTRIBUTES = frozenset({"end_time"})
_TABLES = {"metric": "metrics", "param": "params", "tag": "tags"}
_VALUE_OPS = frozenset({"=", "!=", "<", "<=", ">", ">="})
_LIST_LIMIT = 500  # longer IN lists travel as one JSON parameter


# -- LIKE patterns ------------------------------------------------------------------


def _like_pieces(pattern: str) -> list[tuple[bool, str]]:
    """(is_wildcard, text) pieces: ``%`` and ``_`` wildcards, the rest literal."""
    pieces: list[tuple[bool, str]] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            pieces.append((False, pattern[i + 1]))
            i += 2
            continue
        pieces.append((char in "%_", char))
        i += 1
    return pieces


def like_to_glob(pattern: str) -> str:
    """The GLOB pattern (case-sensitive) matching what the LIKE pattern matches."""
    out: list[str] = []
    for wildcard, char in _like_pieces(pattern):
        if wildcard:
            out.append("*" if char == "%" else "?")
        elif char in "*?[":
            out.append(f"[{char}]")
        else:
            out.append(char)
    return "".join(out)


def like_to_sqlite_like(pattern: str) -> str:
    """The pattern for SQLite's ``LIKE ? ESCAPE '\\'`` (case-insensitive for ASCII)."""
    out: list[str] = []
    for wildcard, char in _like_pieces(pattern):
        out.append(char if wildcard or char not in "%_\\" else "\\" + char)
    return "".join(out)


# -- WHERE --------------------------------------------------------------------------


def compile_where(expr: Expr | None) -> tuple[str, list[object]]:
    """A boolean SQL expression over ``runs r`` and its parameters; ``"1"`` for None."""
    if expr is None:
        return "1", []
    params: list[object] = []
    return _expr(expr, params), params


def _expr(expr: Expr, params: list[object]) -> str:
    if isinstance(expr, Comparison):
        return _comparison(expr, params)
    if isinstance(expr, And | Or) and expr.parts:
        word = "AND" if isinstance(expr, And) else "OR"
        return _balanced([_expr(part, params) for part in expr.parts], word)
    if isinstance(expr, And):
        return "1"
    if isinstance(expr, Or):
        return "0"
    raise InvalidInput(f"cannot compile {expr!r}: not a filter expression")


def _balanced(parts: list[str], word: str) -> str:
    # Halves, not a chain: SQLite caps expression depth at 1000 and a chain of
    # N terms is N deep; this is log2(N). Parameters stay in textual order.
    if len(parts) == 1:
        return parts[0]
    middle = len(parts) // 2
    return f"({_balanced(parts[:middle], word)} {word} {_balanced(parts[middle:], word)})"


def _comparison(comparison: Comparison, params: list[object]) -> str:
    ident, op, value = comparison.ident, comparison.op, comparison.value
    if ident.kind == "dataset":
        return "0"
    if ident.kind in _TABLES and not _mirrored(ident):
        table = _TABLES[ident.kind]
        params.append(ident.key)
        probe = f"SELECT 1 FROM {table} x WHERE x.run = r.n AND x.key = ?"
        if op == "IS NULL":
            return f"NOT EXISTS ({probe})"
        if op == "IS NOT NULL":
            return f"EXISTS ({probe})"
        if ident.kind != "metric" and op in ("=", "IN"):
            # Likely selective: SQLite can start from the (key, value) index.
            condition = _condition("value", op, value, params)
            return f"r.n IN (SELECT run FROM {table} WHERE key = ? AND {condition})"
        # Ranges, patterns, !=: a primary-key probe per run, which costs no more
        # than a scan and lets a LIMIT stop it early.
        condition = _condition("x.value", op, value, params)
        if ident.kind == "metric" and op == "!=":
            condition = f"({condition} OR x.is_nan)"
        return f"EXISTS ({probe} AND {condition})"
    return _condition(_column(ident, params), op, value, params)


def _condition(column: str, op: str, value: object, params: list[object]) -> str:
    if op in _VALUE_OPS and isinstance(value, str | int | float):
        params.append(value)
        return f"{column} {op} ?"
    if op == "LIKE" and isinstance(value, str):
        params.append(like_to_glob(value))
        return f"{column} GLOB ?"
    if op == "ILIKE" and isinstance(value, str):
        params.append(like_to_sqlite_like(value))
        return f"{column} LIKE ? ESCAPE '\\'"
    if op in ("IN", "NOT IN") and isinstance(value, tuple):
        if not value:
            return "0" if op == "IN" else f"{column} IS NOT NULL"
        if len(value) > _LIST_LIMIT:
            params.append(json.dumps(list(value)))
            return f"{column} {op} (SELECT value FROM json_each(?))"
        params.extend(value)
        return f"{column} {op} ({', '.join('?' * len(value))})"
    if op == "IS NULL" and value is None:
        return f"{column} IS NULL"
    if op == "IS NOT NULL" and value is None:
        return f"{column} IS NOT NULL"
    raise InvalidInput(f"cannot compile operator {op!r} with value {value!r}")


def _mirrored(ident: Identifier) -> bool:
    return ident.kind == "tag" and ident.key in MIRRORED_TAGS


def _column(ident: Identifier, params: list[object]) -> str:
    """The SQL for a single-valued field: an attribute column or a mirrored tag."""
    if ident.kind == "attribute":
        column = ATTRIBUTE_COLUMNS.get(ident.key)
        if column is None:
            raise InvalidInput(f"cannot compile unknown attribute {ident.key!r}")
        return column
    if _mirrored(ident):
        params.append(ident.key)
        return (
            "COALESCE((SELECT t.value FROM tags t WHERE t.run = r.n AND t.key = ?), "
            f"{MIRRORED_TAGS[ident.key]})"
        )
    raise InvalidInput(f"cannot compile {ident.kind} {ident.key!r} as a column")


def compile_value(ident: Identifier) -> tuple[str, list[object]]:
    """A SQL expression over ``runs r`` for the value ``ident`` compares, and its parameters.

    NULL when the run has none; a NaN metric reads as the text ``'nan'``
    (``float()`` takes it), since the index stores it as NULL.
    """
    params: list[object] = []
    if ident.kind == "dataset":
        return "NULL", params
    if ident.kind in _TABLES and not _mirrored(ident):
        params.append(ident.key)
        value = "COALESCE(v.value, 'nan')" if ident.kind == "metric" else "v.value"
        table = _TABLES[ident.kind]
        return f"(SELECT {value} FROM {table} v WHERE v.run = r.n AND v.key = ?)", params
    return _column(ident, params), params


# -- ORDER BY -----------------------------------------------------------------------


def compile_order(keys: Sequence[OrderKey]) -> tuple[str, list[object]]:
    """An ORDER BY list (without the words ORDER BY) and its parameters.

    Ends with MLflow's tie-breakers, so equal keys page in a stable order.
    """
    terms: list[str] = []
    params: list[object] = []
    for order_key in keys:
        ident = order_key.ident
        if ident.kind == "dataset":
            raise InvalidInput("datasets cannot be used in order_by")
        # One term per key, using SQLite's order of types (NULL < numbers < text
        # < blobs) so that values come first, then NaN, then runs without one.
        if ident.kind == "metric":
            value = "m.value" if order_key.ascending else "-m.value"
            params.append(ident.key)
            terms.append(
                f"COALESCE((SELECT COALESCE({value}, '') FROM metrics m "
                "WHERE m.run = r.n AND m.key = ?), X'') ASC"
            )
            continue
        column, value_params = compile_value(ident)
        params.extend(value_params)
        nullable = ident.kind in _TABLES or ident.key in _NULLABLE_ATTRIBUTES
        if order_key.ascending:
            terms.append(f"COALESCE({column}, X'') ASC" if nullable else f"{column} ASC")
        else:
            terms.append(f"{column} DESC")  # NULL sorts last in DESC
    ordered = {key.ident for key in keys}
    if Identifier("attribute", "start_time") not in ordered:
        terms.append("r.start_time DESC")
    if Identifier("attribute", "run_id") not in ordered:
        terms.append("r.run_id ASC")
    return ", ".join(terms), params
