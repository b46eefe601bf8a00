"""Small index queries that MLflow's filter grammar does not express.

A run's children (MLflow finds them by the ``mlflow.parentRunId`` tag; gitml
keeps the parent in the record, and the index has a column for it) and the
number of runs in each experiment, for ``gitml experiments list``.
"""

from __future__ import annotations

from gitml.errors import InvalidInput
from gitml.format.records import Run
from gitml.query.index import QueryIndex
from gitml.query.search import VIEW_TYPES


def child_runs(index: QueryIndex, run_id: str, run_view_type: str = "ACTIVE_ONLY") -> list[Run]:
    """Runs whose parent is ``run_id``, newest first."""
    view = _view(run_view_type)
    rows = index.read(
        lambda conn: conn.execute(
            f"SELECT r.record FROM runs r WHERE r.parent_run_id = ? AND {view} "
            "ORDER BY r.start_time DESC, r.run_id",
            (run_id,),
        ).fetchall()
    )
    return index.runs(row[0] for row in rows)


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


def _view(run_view_type: str) -> str:
    view = VIEW_TYPES.get(str(run_view_type).upper())
    if view is None:
        raise InvalidInput(
            f"run_view_type must be one of {', '.join(VIEW_TYPES)}, got {run_view_type!r}"
        )
    return view
