"""Filters and order_by compiled to SQLite: which runs they select, in which order.

Each test runs the compiled SQL on a small in-memory index of ten runs with
params, tags and metrics (NaN, +/-inf and missing values included), and a
property test checks random ASTs against a plain-Python reading of MLflow's rules.
"""

from __future__ import annotations

import functools
import math
import operator
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitml.errors import InvalidInput
from gitml.query.compile import (
    compile_order,
    compile_where,
    like_to_glob,
    like_to_sqlite_like,
)
from gitml.query.grammar import (
    And,
    Comparison,
    Expr,
    Identifier,
    Or,
    OrderKey,
    parse_filter,
    parse_order_by,
)
from gitml.query.index import memory_index

NAN = math.nan
INF = math.inf


@dataclass
class FakeRun:
    run_id: str
    name: str
    status: str
    start_time: int
    end_time: int | None
    user: str
    experiment_id: str = "1"
    lifecycle_stage: str = "active"
    parent_run_id: str | None = None
    source_commit: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


RUNS = [
    FakeRun(
        "run01",
        "baseline",
        "FINISHED",
        1000,
        2000,
        "alice",
        params={"alpha": "0.1", "note": "x"},
        tags={"team": "growth"},
        metrics={"rmse": 0.3, "acc": 0.9},
    ),
    FakeRun(
        "run02",
        "Baseline-2",
        "FINISHED",
        2000,
        3000,
        "bob",
        parent_run_id="run01",
        params={"alpha": "0.2"},
        tags={"team": "core"},
        metrics={"rmse": 0.7, "acc": 0.8},
    ),
    FakeRun(
        "run03",
        "tuned",
        "FAILED",
        3000,
        3500,
        "alice",
        params={"alpha": "0.1"},
        tags={"team": "Growth"},
        metrics={"rmse": NAN, "acc": 0.5},
    ),
    FakeRun(
        "run04",
        "tuned_2",
        "RUNNING",
        4000,
        None,
        "carol",
        parent_run_id="run01",
        params={"alpha": "0.5"},
        metrics={"rmse": INF},
    ),
    FakeRun(
        "run05",
        "big",
        "FINISHED",
        5000,
        6000,
        "bob",
        params={"note": "[x]"},
        tags={"team": "core"},
        metrics={"rmse": -INF, "acc": 0.8},
    ),
    FakeRun(
        "run06",
        "x%y",
        "KILLED",
        6000,
        7000,
        "alice",
        params={"alpha": "10"},
        tags={"team": "100%"},
    ),
    FakeRun(
        "run07",
        "under_score",
        "FINISHED",
        7000,
        8000,
        "dave",
        params={"alpha": "0.1"},
        tags={"team": "a_b"},
        metrics={"rmse": 0.5},
    ),
    FakeRun(
        "run08",
        "star*name",
        "FINISHED",
        7000,
        9000,
        "dave",
        params={"alpha": "it's"},
        tags={"team": "a*b", "mlflow.user": "someone-else"},
        metrics={"rmse": 0.5},
    ),
    FakeRun(
        "run09",
        "ünïcode",
        "FINISHED",
        9000,
        9500,
        "erin",
        lifecycle_stage="deleted",
        source_commit="c" * 40,
        params={"alpha": "ÄB"},
        tags={"mlflow.runName": "renamed"},
        metrics={"rmse": 0.1},
    ),
    FakeRun("run10", "plain", "FINISHED", 10000, 11000, "erin"),
]
ALL = [run.run_id for run in RUNS]


def make_index(runs: Sequence[FakeRun] = RUNS) -> sqlite3.Connection:
    """An in-memory index with the index's own schema holding ``runs``."""
    conn = memory_index()
    for n, run in enumerate(runs, 1):
        conn.execute(
            "INSERT INTO runs VALUES (?,?,X'',?,?,?,?,?,?,?,?,?,NULL,0,NULL,NULL,NULL,NULL,NULL)",
            (
                n,
                run.run_id,
                run.experiment_id,
                run.name,
                run.status,
                run.lifecycle_stage,
                run.start_time,
                run.end_time,
                run.user,
                run.parent_run_id,
                None if run.source_commit is None else bytes.fromhex(run.source_commit),
            ),
        )
        for key, value in run.params.items():
            conn.execute("INSERT INTO params VALUES (?, ?, ?)", (n, key, value))
        for key, value in run.tags.items():
            conn.execute("INSERT INTO tags VALUES (?, ?, ?)", (n, key, value))
        for key, number in run.metrics.items():
            nan = math.isnan(number)
            conn.execute(
                "INSERT INTO metrics VALUES (?, ?, ?, ?, 0, 0)",
                (n, key, None if nan else number, int(nan)),
            )
    return conn


@functools.cache
def index() -> sqlite3.Connection:
    return make_index()


def query(
    expr: Expr | None, keys: Sequence[OrderKey] = (), conn: sqlite3.Connection | None = None
) -> list[str]:
    where, params = compile_where(expr)
    order, order_params = compile_order(keys)
    sql = f"SELECT r.run_id FROM runs r WHERE {where} ORDER BY {order}"
    rows = (conn or index()).execute(sql, [*params, *order_params]).fetchall()
    return [row[0] for row in rows]


def select(text: str) -> set[str]:
    return set(query(parse_filter(text)))


def ordered(*clauses: str, where: str = "") -> list[str]:
    return query(parse_filter(where), parse_order_by(list(clauses)))


def ids(*numbers: int) -> set[str]:
    return {f"run{n:02d}" for n in numbers}


# -- filters ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # metrics: NaN satisfies != only, +/-inf compare as infinities, missing never matches
        ("metrics.rmse < 0.5", ids(1, 5, 9)),
        ("metrics.rmse <= 0.5", ids(1, 5, 7, 8, 9)),
        ("metrics.rmse = 0.5", ids(7, 8)),
        ("metrics.rmse != 0.3", ids(2, 3, 4, 5, 7, 8, 9)),
        ("metrics.rmse > 100", ids(4)),
        ("metrics.rmse >= 1e999", ids(4)),
        ("metrics.rmse < -1e308", ids(5)),
        ("metrics.rmse > -1e999", ids(1, 2, 4, 7, 8, 9)),
        ("metrics.rmse IS NULL", ids(6, 10)),
        ("metrics.rmse IS NOT NULL", ids(1, 2, 3, 4, 5, 7, 8, 9)),
        ("metrics.nope > 0", set()),
        ("metrics.nope IS NULL", set(ALL)),
        # params: strings; != is false where the param is missing
        ("params.alpha = '0.1'", ids(1, 3, 7)),
        ("params.alpha = '0.10'", set()),
        ("params.alpha != '0.1'", ids(2, 4, 6, 8, 9)),
        ("params.alpha = 'it''s'", ids(8)),
        ("params.alpha IS NULL", ids(5, 10)),
        ("params.note IS NOT NULL", ids(1, 5)),
        # LIKE is case-sensitive and matches the whole value; ILIKE folds case
        ("tags.team LIKE 'growth'", ids(1)),
        ("tags.team ILIKE 'growth'", ids(1, 3)),
        ("tags.team LIKE 'GROWTH'", set()),
        ("tags.team ILIKE 'GROW%'", ids(1, 3)),
        ("tags.team LIKE 'gr%'", ids(1)),
        ("tags.team LIKE '%o%'", ids(1, 2, 3, 5)),
        ("tags.team LIKE 'co_e'", ids(2, 5)),
        ("tags.team LIKE 'co_'", set()),
        ("tags.team LIKE '%'", ids(1, 2, 3, 5, 6, 7, 8)),
        # LIKE wildcards, escapes, and GLOB's own metacharacters taken literally
        ("tags.team LIKE 'a_b'", ids(7, 8)),
        ("tags.team LIKE 'a\\_b'", ids(7)),
        ("tags.team ILIKE 'A\\_B'", ids(7)),
        ("tags.team LIKE 'a*b'", ids(8)),
        ("tags.team ILIKE 'A*B'", ids(8)),
        ("tags.team LIKE '100\\%'", ids(6)),
        ("tags.team ILIKE '100\\%'", ids(6)),
        ("tags.team LIKE '1%'", ids(6)),
        ("params.note LIKE '[x]'", ids(5)),
        ("params.note LIKE '[%'", ids(5)),
        ("params.note LIKE 'x'", ids(1)),
        ("params.alpha LIKE '?'", set()),
        ("params.alpha LIKE '0._'", ids(1, 2, 3, 4, 7)),
        ("params.alpha LIKE 'Ä_'", ids(9)),
        # SQLite folds ASCII letters only
        ("params.alpha ILIKE 'äb'", set()),
        ("params.alpha ILIKE 'Äb'", ids(9)),
        # attributes
        ("attributes.status = 'FINISHED'", ids(1, 2, 5, 7, 8, 9, 10)),
        ("status = 'finished'", set()),
        ("attributes.status != 'FINISHED'", ids(3, 4, 6)),
        ("attributes.run_name = 'baseline'", ids(1)),
        ("run_name LIKE 'baseline%'", ids(1)),
        ("run_name ILIKE 'baseline%'", ids(1, 2)),
        ("`Run name` LIKE '%\\_%'", ids(4, 7)),
        ("attributes.run_name LIKE 'x\\%y'", ids(6)),
        ("attributes.user_id = 'alice'", ids(1, 3, 6)),
        ("attributes.run_id = 'run03'", ids(3)),
        ("attributes.run_id IN ('run03', 'run05', 'nope')", ids(3, 5)),
        ("attributes.run_id NOT IN ('run03', 'run05')", set(ALL) - ids(3, 5)),
        ("attributes.start_time >= 7000", ids(7, 8, 9, 10)),
        ("attributes.created < 2500", ids(1, 2)),
        ("attributes.start_time = 7000.0", ids(7, 8)),
        # end_time is NULL while the run is live: comparisons with it are false
        ("attributes.end_time > 0", set(ALL) - ids(4)),
        ("attributes.end_time != 2000", set(ALL) - ids(1, 4)),
        ("attributes.end_time IS NULL", ids(4)),
        ("attributes.end_time IS NOT NULL", set(ALL) - ids(4)),
        ("attributes.artifact_uri = 'runs:/run02/'", ids(2)),
        ("attributes.artifact_uri LIKE 'runs:/run1%'", ids(10)),
        # tags MLflow sets on every run read the run's column unless the tag was set
        ("tags.mlflow.runName = 'baseline'", ids(1)),
        ("tags.mlflow.runName = 'renamed'", ids(9)),
        ("tags.mlflow.runName = 'ünïcode'", set()),
        ("tags.`mlflow.user` = 'dave'", ids(7)),
        ("tags.`mlflow.user` = 'someone-else'", ids(8)),
        ("tags.mlflow.parentRunId = 'run01'", ids(2, 4)),
        ("tags.mlflow.parentRunId IS NULL", set(ALL) - ids(2, 4)),
        ("tags.mlflow.source.git.commit LIKE 'ccc%'", ids(9)),
        # datasets: gitml records none, so nothing matches
        ("datasets.name = 'x'", set()),
        ("datasets.digest NOT IN ('x')", set()),
        # AND, OR, parentheses
        ("metrics.rmse < 0.5 and params.alpha = '0.1'", ids(1)),
        ("metrics.rmse <= 0.5 AND params.alpha = '0.1'", ids(1, 7)),
        ("params.alpha = '0.1' OR tags.team = 'core'", ids(1, 2, 3, 5, 7)),
        ("params.alpha = '0.1' OR tags.team = 'core' AND metrics.rmse < 0", ids(1, 3, 5, 7)),
        ("(params.alpha = '0.1' OR tags.team = 'core') AND metrics.rmse < 0.5", ids(1, 5)),
        ("metrics.acc > 0.7 AND NOT_A_RUN_ID IS NULL OR run_id = 'run10'", None),
    ],
)
def test_filters_select(text: str, expected: set[str] | None) -> None:
    if expected is None:  # a filter the grammar rejects never reaches SQL
        with pytest.raises(InvalidInput):
            parse_filter(text)
        return
    assert select(text) == expected


def test_no_filter_selects_every_run() -> None:
    assert compile_where(None) == ("1", [])
    assert set(query(None)) == set(ALL)


def test_empty_in_lists_and_connectives_from_code() -> None:
    run_id = Identifier("attribute", "run_id")
    assert query(Comparison(run_id, "IN", ())) == []
    assert set(query(Comparison(run_id, "NOT IN", ()))) == set(ALL)
    assert query(And(())) == query(None)
    assert query(Or(())) == []


def test_long_in_lists_travel_as_one_parameter() -> None:
    many = (*(f"id{i}" for i in range(2000)), "run04")
    where, params = compile_where(Comparison(Identifier("attribute", "run_id"), "IN", many))
    assert len(params) == 1
    assert "json_each" in where
    assert set(query(Comparison(Identifier("attribute", "run_id"), "IN", many))) == ids(4)
    assert len(query(Comparison(Identifier("attribute", "run_id"), "NOT IN", many))) == 9


def test_more_terms_than_sqlites_depth_limit_compile() -> None:
    # SQLite refuses expressions nested deeper than 1,000 (SQLITE_MAX_EXPR_DEPTH):
    # 1,200 terms chained one inside the other would be; each costs the query a scan.
    text = " OR ".join(f"metrics.rmse = {i}" for i in range(1200)) + " OR run_id = 'run10'"
    assert select(text) == ids(10)
    text = " AND ".join(f"metrics.rmse > -{i}" for i in range(1200))
    assert select(text) == ids(1, 2, 4, 7, 8, 9)


def test_experiment_and_lifecycle_attributes_compile_from_code() -> None:
    # Not in MLflow's filter grammar (search_runs has experiment_ids and run_view_type
    # for them), but the index's own queries may build them.
    deleted = Comparison(Identifier("attribute", "lifecycle_stage"), "=", "deleted")
    assert query(deleted) == ["run09"]
    assert len(query(Comparison(Identifier("attribute", "experiment_id"), "=", "1"))) == 10


def test_what_the_grammar_cannot_produce_is_refused() -> None:
    with pytest.raises(InvalidInput):
        compile_where(Comparison(Identifier("attribute", "nope"), "=", "x"))
    with pytest.raises(InvalidInput):
        compile_where(Comparison(Identifier("metric", "x"), "LIKE", 1.0))
    with pytest.raises(InvalidInput):
        compile_order([OrderKey(Identifier("dataset", "name"), True)])


# -- order_by ---------------------------------------------------------------------


def test_default_order_is_newest_first_then_run_id() -> None:
    assert compile_order([]) == ("r.start_time DESC, r.run_id ASC", [])
    assert ordered() == [f"run{n:02d}" for n in (10, 9, 7, 8, 6, 5, 4, 3, 2, 1)]


@pytest.mark.parametrize(
    ("clauses", "expected"),
    [
        # numbers, then NaN (run03), then missing (run10, run06: newest first) both ways
        (["metrics.rmse"], [5, 9, 1, 7, 8, 2, 4, 3, 10, 6]),
        (["metrics.rmse ASC"], [5, 9, 1, 7, 8, 2, 4, 3, 10, 6]),
        (["metrics.rmse DESC"], [4, 2, 7, 8, 1, 9, 5, 3, 10, 6]),
        # ties on the key fall back to start_time DESC, then run_id
        (["metrics.acc DESC"], [1, 5, 2, 3, 10, 9, 7, 8, 6, 4]),
        (["metrics.acc DESC", "start_time ASC"], [1, 2, 5, 3, 4, 6, 7, 8, 9, 10]),
        (["metrics.acc DESC", "run_id DESC"], [1, 5, 2, 3, 10, 9, 8, 7, 6, 4]),
        # params and tags are strings (so '10' < '0.5' is false, 'it''s' > '0.5'); missing last
        (["params.alpha"], [7, 3, 1, 2, 4, 6, 8, 9, 10, 5]),
        (["params.alpha DESC"], [9, 8, 6, 4, 2, 7, 3, 1, 10, 5]),
        (["tags.team", "metrics.rmse DESC"], [6, 3, 8, 7, 2, 5, 1, 4, 9, 10]),
        (["tags.team DESC"], [1, 5, 2, 7, 8, 3, 6, 10, 9, 4]),
        # attributes
        (["start_time"], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
        (["attributes.created DESC"], [10, 9, 7, 8, 6, 5, 4, 3, 2, 1]),
        (["end_time"], [1, 2, 3, 5, 6, 7, 8, 9, 10, 4]),
        (["end_time DESC"], [10, 9, 8, 7, 6, 5, 3, 2, 1, 4]),
        (["run_name"], [2, 1, 5, 10, 8, 3, 4, 7, 6, 9]),
        (["status", "user_id DESC"], [3, 10, 9, 7, 8, 5, 2, 1, 6, 4]),
        (["run_id DESC"], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]),
        (["artifact_uri DESC"], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]),
        # a mirrored tag: the tag if set (run09: 'renamed'), else the run name
        (["tags.mlflow.runName"], [2, 1, 5, 10, 9, 8, 3, 4, 7, 6]),
        (["tags.mlflow.parentRunId", "start_time"], [2, 4, 1, 3, 5, 6, 7, 8, 9, 10]),
        (["tags.mlflow.parentRunId DESC", "start_time"], [2, 4, 1, 3, 5, 6, 7, 8, 9, 10]),
        (["metrics.nope DESC"], [10, 9, 7, 8, 6, 5, 4, 3, 2, 1]),
    ],
)
def test_order(clauses: list[str], expected: list[int]) -> None:
    assert ordered(*clauses) == [f"run{n:02d}" for n in expected]


def test_order_with_a_filter() -> None:
    assert ordered("metrics.rmse DESC", where="params.alpha = '0.1' OR metrics.rmse < 0") == [
        "run07",
        "run01",
        "run05",
        "run03",
    ]


def test_parameters_follow_the_sql() -> None:
    where, params = compile_where(parse_filter("metrics.a < 1 AND params.b = 'x'"))
    assert where.count("?") == len(params) == 4
    assert params == ["a", 1.0, "b", "x"]
    order, order_params = compile_order(parse_order_by(["params.b DESC", "metrics.a"]))
    assert order.count("?") == len(order_params) == 2
    assert order_params == ["b", "a"]


# -- injection --------------------------------------------------------------------

PAYLOADS = [
    "'); DROP TABLE runs; --",
    '"); DROP TABLE runs; --',
    "x' OR '1'='1",
    "1; DELETE FROM params",
    "%' OR 1=1 --",
    "\\'); DROP TABLE tags; --",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_keys_and_values_are_parameters(payload: str) -> None:
    conn = make_index()
    quoted = "'" + payload.replace("'", "''") + "'"
    key = "`" + payload.replace("`", "``") + "`"
    filters = [
        f"params.{key} = {quoted}",
        f"params.alpha = {quoted}",
        f"tags.{key} LIKE {quoted}",
        f"tags.team ILIKE {quoted}",
        f"metrics.{key} > 0",
        f"attributes.run_name = {quoted}",
        f"attributes.run_id IN ({quoted}, {quoted})",
        f"params.{key} IS NULL AND tags.{key} != {quoted}",
    ]
    for text in filters:
        expr = parse_filter(text)
        where, _ = compile_where(expr)
        assert payload not in where
        assert query(expr, conn=conn) == []
    order, _ = compile_order(parse_order_by([f"params.{key} DESC", f"metrics.{key}"]))
    assert payload not in order
    assert query(None, parse_order_by([f"tags.{key}"]), conn=conn)
    counts = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("runs", "params")]
    assert counts == [10, sum(len(run.params) for run in RUNS)]


def test_an_injected_filter_matches_nothing() -> None:
    conn = make_index()
    assert query(parse_filter("params.alpha = '''); DROP TABLE runs; --'"), conn=conn) == []
    assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 10


# -- LIKE translation -------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "glob", "like"),
    [
        ("abc", "abc", "abc"),
        ("a%b_c", "a*b?c", "a%b_c"),
        ("a\\%b\\_c", "a%b_c", "a\\%b\\_c"),
        ("*?[]", "[*][?][[]]", "*?[]"),
        ("a\\\\b", "a\\b", "a\\\\b"),
        ("a\\b", "ab", "ab"),
        ("trailing\\", "trailing\\", "trailing\\\\"),
    ],
)
def test_like_translation(pattern: str, glob: str, like: str) -> None:
    assert like_to_glob(pattern) == glob
    assert like_to_sqlite_like(pattern) == like


# -- random ASTs against a Python reading of MLflow's rules -----------------------

COLUMNS = {
    "run_id": "run_id",
    "run_name": "name",
    "status": "status",
    "start_time": "start_time",
    "end_time": "end_time",
    "user_id": "user",
}
MIRRORED = {"mlflow.runName": "name", "mlflow.parentRunId": "parent_run_id"}


def _value(run: FakeRun, ident: Identifier) -> object:
    """The run's value for ``ident``: None when it has none."""
    if ident.kind == "metric":
        return run.metrics.get(ident.key)
    if ident.kind == "param":
        return run.params.get(ident.key)
    if ident.kind == "tag":
        if ident.key in MIRRORED and ident.key not in run.tags:
            return getattr(run, MIRRORED[ident.key])
        return run.tags.get(ident.key)
    if ident.key == "artifact_uri":
        return f"runs:/{run.run_id}/"
    return getattr(run, COLUMNS[ident.key])


def _like(value: str, pattern: str, fold: bool) -> bool:
    regex = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            regex.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        regex.append({"%": ".*", "_": "."}.get(char, re.escape(char)))
        i += 1
    if fold:  # SQLite folds ASCII letters only
        table = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
        value, regex = value.translate(table), [part.translate(table) for part in regex]
    return re.fullmatch("".join(regex), value, re.DOTALL) is not None


def _matches(run: FakeRun, expr: Expr) -> bool:
    if isinstance(expr, And):
        return all(_matches(run, part) for part in expr.parts)
    if isinstance(expr, Or):
        return any(_matches(run, part) for part in expr.parts)
    lhs, op, rhs = _value(run, expr.ident), expr.op, expr.value
    if op == "IS NULL":
        return lhs is None
    if op == "IS NOT NULL":
        return lhs is not None
    if lhs is None:
        return False
    if isinstance(lhs, float) and math.isnan(lhs):
        return op == "!="  # as in MLflow's SQL store
    if op in ("LIKE", "ILIKE"):
        assert isinstance(lhs, str) and isinstance(rhs, str)
        return _like(lhs, rhs, fold=op == "ILIKE")
    if op == "IN":
        assert isinstance(rhs, tuple)
        return lhs in rhs
    if op == "NOT IN":
        assert isinstance(rhs, tuple)
        return lhs not in rhs
    compare: Callable[[Any, Any], Any] = {
        "=": operator.eq,
        "!=": operator.ne,
        "<": operator.lt,
        "<=": operator.le,
        ">": operator.gt,
        ">=": operator.ge,
    }[op]
    return bool(compare(lhs, rhs))


def _reference_order(runs: Sequence[FakeRun], keys: Sequence[OrderKey]) -> list[str]:
    """MLflow's SearchUtils.sort: per key values, then NaN, then missing; then the tie-breakers."""
    full = list(keys)
    idents = {key.ident for key in keys}
    if Identifier("attribute", "start_time") not in idents:
        full.append(OrderKey(Identifier("attribute", "start_time"), False))
    if Identifier("attribute", "run_id") not in idents:
        full.append(OrderKey(Identifier("attribute", "run_id"), True))

    def rank(value: object) -> int:
        if value is None:
            return 2
        return 1 if isinstance(value, float) and math.isnan(value) else 0

    def compare(a: FakeRun, b: FakeRun) -> int:
        for key in full:
            x, y = _value(a, key.ident), _value(b, key.ident)
            if rank(x) != rank(y):
                return rank(x) - rank(y)
            if rank(x) == 0 and x != y:
                less = x < y  # type: ignore[operator]
                return (-1 if less else 1) * (1 if key.ascending else -1)
        return 0

    return [run.run_id for run in sorted(runs, key=functools.cmp_to_key(compare))]


METRIC_KEYS = ["rmse", "acc", "nope"]
PARAM_KEYS = ["alpha", "note", "nope"]
TAG_KEYS = ["team", "mlflow.runName", "mlflow.parentRunId", "nope"]
STRING_VALUES = sorted(
    {v for run in RUNS for v in [*run.params.values(), *run.tags.values(), run.name]}
)
pattern_text = st.text(alphabet="aAbBcCgGoOrRwW01.%_\\*?[]'ÄäX", max_size=6)
metric_values = st.one_of(
    st.sampled_from([-INF, -1.0, 0.0, 0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 1e308, INF]),
    st.floats(allow_nan=False),
)
string_values = st.one_of(st.sampled_from(STRING_VALUES), pattern_text)


def _comparisons() -> st.SearchStrategy[Comparison]:
    metric = st.builds(Identifier, st.just("metric"), st.sampled_from(METRIC_KEYS))
    param = st.builds(Identifier, st.just("param"), st.sampled_from(PARAM_KEYS))
    tag = st.builds(Identifier, st.just("tag"), st.sampled_from(TAG_KEYS))
    text_attr = st.builds(
        Identifier, st.just("attribute"), st.sampled_from(["run_name", "status", "user_id"])
    )
    time_attr = st.builds(
        Identifier, st.just("attribute"), st.sampled_from(["start_time", "end_time"])
    )
    run_id = st.just(Identifier("attribute", "run_id"))
    numeric_ops = st.sampled_from(["=", "!=", "<", "<=", ">", ">="])
    string_ops = st.sampled_from(["=", "!=", "LIKE", "ILIKE"])
    null_ops = st.sampled_from(["IS NULL", "IS NOT NULL"])
    id_lists = st.lists(st.sampled_from([*ALL, "nope"]), min_size=1, max_size=4).map(tuple)
    return st.one_of(
        st.builds(Comparison, metric, numeric_ops, metric_values),
        st.builds(Comparison, st.one_of(param, tag, text_attr), string_ops, string_values),
        st.builds(Comparison, st.one_of(metric, param, tag), null_ops, st.none()),
        st.builds(
            Comparison,
            time_attr,
            numeric_ops,
            st.sampled_from([0.0, 2000.0, 3500.0, 7000.0, 9000.5, 1e12]),
        ),
        st.builds(Comparison, run_id, st.sampled_from(["IN", "NOT IN"]), id_lists),
    )


random_filters = st.recursive(
    _comparisons(),
    lambda children: st.one_of(
        st.builds(And, st.lists(children, min_size=2, max_size=3).map(tuple)),
        st.builds(Or, st.lists(children, min_size=2, max_size=3).map(tuple)),
    ),
    max_leaves=6,
)
order_idents = st.sampled_from(
    [Identifier("metric", k) for k in METRIC_KEYS]
    + [Identifier("param", k) for k in PARAM_KEYS]
    + [Identifier("tag", k) for k in TAG_KEYS]
    + [
        Identifier("attribute", k)
        for k in ("run_id", "run_name", "status", "start_time", "end_time", "user_id")
    ]
    + [Identifier("attribute", "artifact_uri")]
)
random_orders = st.lists(
    st.builds(OrderKey, order_idents, st.booleans()),
    max_size=3,
    unique_by=lambda key: key.ident,
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, database=None)
@given(random_filters)
def test_filters_agree_with_mlflows_rules(expr: Expr) -> None:
    expected = {run.run_id for run in RUNS if _matches(run, expr)}
    assert set(query(expr)) == expected


@settings(max_examples=300, deadline=None, database=None)
@given(random_orders)
def test_order_agrees_with_mlflows_rules(keys: list[OrderKey]) -> None:
    assert query(None, keys) == _reference_order(RUNS, keys)
