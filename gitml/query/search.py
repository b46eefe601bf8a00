"""``search_runs``: one query engine for the API, the CLI, the server and the UI.

The filter and order are parsed once (``grammar``), compiled to parameterised
SQL (``compile``) and run against the index, refreshed first so that a query
always sees every ref as it is now.
"""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
from collections.abc import Sequence

from gitml.errors import InvalidInput
from gitml.format.records import Run
from gitml.query.compile import compile_order, compile_where
from gitml.query.grammar import parse_filter, parse_order_by
from gitml.query.index import QueryIndex, records

VIEW_TYPES = {
    "ACTIVE_ONLY": "r.lifecycle_stage = 'active'",
    "DELETED_ONLY": "r.lifecycle_stage = 'deleted'",
    "ALL": "1",
}
MAX_RESULTS = 50_000  # MLflow's cap for one page


class RunPage(list[Run]):
    """One page of runs; ``token`` fetches the next page (None on the last)."""

    def __init__(self, runs: list[Run], token: str | None) -> None:
        super().__init__(runs)
        self.token = token


def search_runs(
    index: QueryIndex,
    experiment_ids: Sequence[str] | None = None,
    filter_string: str | None = "",
    run_view_type: str = "ACTIVE_ONLY",
    max_results: int = 1000,
    order_by: Sequence[str] | None = None,
    page_token: str | None = None,
) -> RunPage:
    """Runs matching MLflow's filter grammar (plus OR and parentheses)."""
    view = VIEW_TYPES.get(str(run_view_type).upper())
    if view is None:
        raise InvalidInput(
            f"run_view_type must be one of {', '.join(VIEW_TYPES)}, got {run_view_type!r}"
        )
    if (
        isinstance(max_results, bool)
        or not isinstance(max_results, int)
        or not (1 <= max_results <= MAX_RESULTS)
    ):
        raise InvalidInput(
            f"max_results must be an integer from 1 to {MAX_RESULTS}, got {max_results!r}"
        )
    if isinstance(order_by, str):
        order_by = [order_by]
    where, params = compile_where(parse_filter(filter_string))
    order, order_params = compile_order(parse_order_by(order_by))
    clauses = [view, f"({where})"]
    if experiment_ids is not None:
        ids = list(experiment_ids)
        clauses.append(f"r.experiment_id IN ({','.join('?' * len(ids)) or 'NULL'})")
        params = [*params, *ids]
    offset = _offset(page_token)
    # Sort run numbers only: SQLite's sorter carries every selected column of
    # every match; the page's records are made afterwards.
    sql = f"SELECT r.n FROM runs r WHERE {' AND '.join(clauses)} ORDER BY {order} LIMIT ? OFFSET ?"

    def read(conn: sqlite3.Connection) -> tuple[list[Run], bool]:
        numbers = [
            row[0] for row in conn.execute(sql, [*params, *order_params, max_results + 1, offset])
        ]
        return records(conn, numbers[:max_results]), len(numbers) > max_results

    runs, more = index.read(read)
    return RunPage(runs, _token(offset + max_results) if more else None)


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise InvalidInput(f"page_token {token!r} is not one search_runs returned") from None
    if not isinstance(offset, int) or offset < 0:
        raise InvalidInput(f"page_token {token!r} is not one search_runs returned")
    return offset
