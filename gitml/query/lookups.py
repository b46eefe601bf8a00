"""Index queries that MLflow's filter grammar does not express.

A run's children (MLflow finds them by the ``mlflow.parentRunId`` tag; gitml
keeps the parent in the record, and the index has a column for it), the
number of runs in each experiment, for ``gitml experiments list``, and what
the web UI draws: each experiment's activity, short summaries of runs, and
windows of the runs table (only the rows and columns shown, so the first rows
come after one small query however many runs there are).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gitml.errors import InvalidInput
from gitml.format.records import Run
from gitml.query.compile import compile_order, compile_where
from gitml.query.grammar import parse_filter, parse_order_by
from gitml.query.index import QueryIndex, records
from gitml.query.search import VIEW_TYPES

# The fields of a runs-table row before its chosen columns.
RUN_FIELDS = (
    "id",
    "name",
    "status",
    "start_time",
    "end_time",
    "user",
    "parent_run_id",
    "dirty",
    "lifecycle_stage",
)
_KINDS = ("params", "metrics", "tags")


def child_runs(index: QueryIndex, run_id: str, run_view_type: str = "ACTIVE_ONLY") -> list[Run]:
    """Runs whose parent is ``run_id``, newest first."""
    view = _view(run_view_type)

    def read(conn: sqlite3.Connection) -> list[Run]:
        numbers = conn.execute(
            f"SELECT r.n FROM runs r WHERE r.parent_run_id = ? AND {view} "
            "ORDER BY r.start_time DESC, r.run_id",
            (run_id,),
        ).fetchall()
        return records(conn, [n for (n,) in numbers])

    return index.read(read)


def run_counts(index: QueryIndex) -> dict[str, dict[str, int]]:
    """Experiment id to its number of ``active`` and ``deleted`` runs."""
    out: dict[str, dict[str, int]] = {}
    rows = index.read(
        lambda conn: conn.execute(
            "SELECT experiment_id, lifecycle_stage, count(*) FROM runs "
            "GROUP BY experiment_id, lifecycle_stage"
        ).fetchall()
    )
    for experiment_id, stage, count in rows:
        out.setdefault(experiment_id, {"active": 0, "deleted": 0})[stage] = count
    return out


@dataclass(frozen=True)
class Activity:
    """An experiment's number of active and deleted runs, and its latest start or end (ms)."""

    active: int
    deleted: int
    last: int | None


def experiment_activity(index: QueryIndex) -> dict[str, Activity]:
    """Experiment id to its ``Activity``; an experiment without runs is absent."""
    rows = index.read(
        lambda conn: conn.execute(
            "SELECT experiment_id, "
            "sum(lifecycle_stage = 'active'), sum(lifecycle_stage = 'deleted'), "
            "max(max(start_time, coalesce(end_time, 0))) FROM runs GROUP BY experiment_id"
        ).fetchall()
    )
    return {row[0]: Activity(*row[1:]) for row in rows}


@dataclass(frozen=True)
class RunSummary:
    """What a list of runs shows of each, without reading its record."""

    id: str
    name: str | None
    status: str
    start_time: int
    dirty: bool | None


def run_summaries(
    index: QueryIndex,
    *,
    parent_run_id: str | None = None,
    source_commit: str | None = None,
    limit: int = -1,
) -> list[RunSummary]:
    """Active runs with this parent, or made from this code commit, newest first."""
    column, value = (
        ("parent_run_id", parent_run_id)
        if parent_run_id is not None
        else ("source_commit", bytes.fromhex(source_commit or ""))  # kept as its 20 bytes
    )
    rows = index.read(
        lambda conn: conn.execute(
            f"SELECT run_id, name, status, start_time, source_dirty FROM runs WHERE {column} = ? "
            "AND lifecycle_stage = 'active' ORDER BY start_time DESC, run_id LIMIT ?",
            (value, limit),
        ).fetchall()
    )
    return [RunSummary(r[0], r[1], r[2], r[3], None if r[4] is None else bool(r[4])) for r in rows]


@dataclass(frozen=True)
class RunsWindow:
    """One window of a runs table: the matching runs' total, the row fields, the rows and,
    when asked, every param, metric and tag key of the experiments."""

    total: int
    fields: list[str]
    rows: list[list[Any]]
    keys: dict[str, list[str]] | None


def runs_window(
    index: QueryIndex,
    *,
    experiment_ids: list[str] | None,
    filter_string: str,
    order_by: list[str],
    run_view_type: str,
    columns: list[str] | None,
    offset: int,
    limit: int,
    with_keys: bool = False,
    default_columns: int = 5,
) -> RunsWindow:
    """Rows ``offset`` to ``offset + limit`` of the runs matching a filter: the fields of
    ``RUN_FIELDS`` then ``columns`` (``params.<key>``, ``metrics.<key>`` or
    ``tags.<key>``; by default the first ``default_columns`` metrics and params)."""
    where, params = compile_where(parse_filter(filter_string))
    order, order_params = compile_order(parse_order_by(order_by))
    clauses = [_view(run_view_type), f"({where})"]
    if experiment_ids is not None:
        clauses.append(f"r.experiment_id IN ({_marks(len(experiment_ids)) or 'NULL'})")
        params = [*params, *experiment_ids]
    condition = " AND ".join(clauses)

    def work(conn: sqlite3.Connection) -> RunsWindow:
        keys = _keys(conn, experiment_ids) if with_keys or columns is None else None
        specs = columns
        if specs is None:
            assert keys is not None
            specs = [
                *(f"metrics.{k}" for k in keys["metrics"][:default_columns]),
                *(f"params.{k}" for k in keys["params"][:default_columns]),
            ]
        chosen = [_column(spec) for spec in specs]
        (total,) = conn.execute(f"SELECT count(*) FROM runs r WHERE {condition}", params).fetchone()
        ids = [
            row[0]
            for row in conn.execute(
                f"SELECT r.run_id FROM runs r WHERE {condition} ORDER BY {order} LIMIT ? OFFSET ?",
                [*params, *order_params, limit, offset],
            )
        ]
        rows = _rows(conn, ids, chosen)
        return RunsWindow(total, [*RUN_FIELDS, *specs], rows, keys if with_keys else None)

    return index.read(work)


def _column(spec: str) -> tuple[str, str]:
    kind, _, key = spec.partition(".")
    if kind not in _KINDS or not key:
        raise InvalidInput(
            f"column '{spec}' is not 'params.<key>', 'metrics.<key>' or 'tags.<key>'"
        )
    return kind, key


def _rows(
    conn: sqlite3.Connection, ids: Sequence[str], columns: Sequence[tuple[str, str]]
) -> list[list[Any]]:
    if not ids:
        return []
    marks = _marks(len(ids))
    base = {
        row[0]: list(row)
        for row in conn.execute(
            "SELECT run_id, name, status, start_time, end_time, user, parent_run_id, "
            f"source_dirty, lifecycle_stage FROM runs WHERE run_id IN ({marks})",
            list(ids),
        )
    }
    values: dict[tuple[str, str, str], Any] = {}
    for kind in _KINDS:
        wanted = sorted({key for k, key in columns if k == kind})
        if not wanted:
            continue
        value = "CASE WHEN x.is_nan THEN 'NaN' ELSE x.value END" if kind == "metrics" else "x.value"
        for run_id, key, found in conn.execute(
            f"SELECT r.run_id, x.key, {value} FROM runs r JOIN {kind} x ON x.run = r.n "
            f"WHERE r.run_id IN ({marks}) AND x.key IN ({_marks(len(wanted))})",
            [*ids, *wanted],
        ):
            values[(run_id, kind, key)] = found
    out = []
    for run_id in ids:
        row = base[run_id]
        row[7] = bool(row[7])
        row.extend(values.get((run_id, kind, key)) for kind, key in columns)
        out.append(row)
    return out


def _keys(conn: sqlite3.Connection, experiment_ids: list[str] | None) -> dict[str, list[str]]:
    """Every param, metric and tag key used by the experiments' runs, sorted."""
    out: dict[str, list[str]] = {}
    for kind in _KINDS:
        if experiment_ids is None:
            sql, args = f"SELECT DISTINCT key FROM {kind} ORDER BY key", []
        else:
            sql = (
                f"SELECT DISTINCT key FROM {kind} WHERE run IN (SELECT n FROM runs "
                f"WHERE experiment_id IN ({_marks(len(experiment_ids)) or 'NULL'})) ORDER BY key"
            )
            args = experiment_ids
        out[kind] = [row[0] for row in conn.execute(sql, args)]
    return out


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _view(run_view_type: str) -> str:
    view = VIEW_TYPES.get(str(run_view_type).upper())
    if view is None:
        raise InvalidInput(
            f"run_view_type must be one of {', '.join(VIEW_TYPES)}, got {run_view_type!r}"
        )
    return view
