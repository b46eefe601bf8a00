"""The JSON the web UI's pages are drawn from, under ``/api/v1/ui``.

Each page of the UI is one or two of these calls, so every view's data is
also an API answer (issue 9). They read through the same library as the rest
of the REST API: the query index for anything over many runs, the tracking
``Client`` for one run, ``Registry`` and ``Lineage`` for models and stages.

The runs table is the one view that must stay fast at 10,000 runs (MLflow's
UI freezes there: its issues #627, #9779, #21841). ``runs-table`` answers one
window of rows, only the columns shown, as arrays, with the total count, so
the page draws the first rows after one small query whatever the number of
runs, and fetches further windows as the table scrolls.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from gitml.errors import GitmlError, InvalidInput, NotFound
from gitml.format.layout import STAGES, run_ref, stage_branch
from gitml.models.mlmodel import logged_models
from gitml.query.compile import compile_order, compile_where
from gitml.query.grammar import FilterSyntaxError, parse_filter, parse_order_by
from gitml.query.search import VIEW_TYPES
from gitml.registry.lineage import Lineage, iso_time, lineage
from gitml.registry.stages import declarations
from gitml.registry.versions import Registry
from gitml.tracking.client import Client

PREFIX = "/api/v1/ui"
MAX_WINDOW = 5_000  # rows in one runs-table answer
MAX_COLUMNS = 100
DEFAULT_COLUMNS = 5  # of metrics, then of params, when the page names none
MAX_SERIES = 400  # (run, metric) histories in one metric-histories answer
_COLUMN_KINDS = {"params": "params", "metrics": "metrics", "tags": "tags"}


class _Body(BaseModel):
    # Strict: a JSON string is not a boolean, nor a number an id.
    model_config = ConfigDict(extra="forbid", strict=True)


class RunsTable(_Body):
    experiment_ids: list[str] | None = None
    filter: str = ""
    order_by: list[str] = Field(default_factory=list)
    run_view_type: Literal["ACTIVE_ONLY", "DELETED_ONLY", "ALL"] = "ACTIVE_ONLY"
    columns: list[str] | None = Field(
        default=None,
        max_length=MAX_COLUMNS,
        description="'params.<key>', 'metrics.<key>' or 'tags.<key>', in the order shown; "
        f"by default the first {DEFAULT_COLUMNS} metrics and params",
    )
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=200, ge=1, le=MAX_WINDOW)
    with_keys: bool = Field(
        default=False, description="Also list every param, metric and tag key of the experiments"
    )


class MetricHistories(_Body):
    run_ids: list[str] = Field(min_length=1, max_length=MAX_SERIES)
    keys: list[str] = Field(min_length=1, max_length=MAX_SERIES)


def _json(data: Any, status: int = 200) -> Response:
    # orjson writes NaN and infinities as null, which JSON.parse accepts.
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


@contextmanager
def _reading(client: Client) -> Iterator[sqlite3.Connection]:
    """The query index, brought up to date, for one consistent read."""
    index = client.index
    index.refresh()
    with index.reading() as conn:
        yield conn


def ui_router(client: Client, registry: Registry, reader: Callable[[Request], None]) -> APIRouter:
    """The UI's routes, each behind ``reader`` (the app's read-token check)."""
    router = APIRouter(prefix=PREFIX, dependencies=[Depends(reader)], include_in_schema=True)

    @router.get("/experiments")
    def experiments() -> Response:
        """Every experiment with its number of runs and its last activity (ms)."""
        with _reading(client) as conn:
            rows = conn.execute(
                "SELECT experiment_id, "
                "sum(lifecycle_stage = 'active'), sum(lifecycle_stage = 'deleted'), "
                "max(max(start_time, coalesce(end_time, 0))) FROM runs GROUP BY experiment_id"
            ).fetchall()
        stats = {row[0]: row[1:] for row in rows}
        out = []
        for experiment in client.list_experiments():
            active, deleted, last = stats.get(experiment.id, (0, 0, None))
            out.append(
                {
                    **experiment.model_dump(mode="json"),
                    "active_runs": active,
                    "deleted_runs": deleted,
                    "last_activity": last if last is not None else experiment.creation_time,
                }
            )
        out.sort(key=lambda e: -int(e["last_activity"]))
        return _json(out)

    @router.post("/runs-table")
    def runs_table(body: RunsTable) -> Response:
        """One window of the runs matching a filter, as rows of the chosen columns."""
        try:
            return _json(_runs_table(client, body))
        except FilterSyntaxError as exc:
            return _json(
                {
                    "error_code": "INVALID_PARAMETER_VALUE",
                    "message": str(exc),
                    "expected": exc.expected,
                    "position": exc.position,
                    "text": exc.text,
                },
                400,
            )

    @router.get("/runs/{run_id}")
    def run_page(run_id: str) -> Response:
        """A run with its code commit, parent, children, artifacts and metric keys."""
        run_id = client.resolve_run_id(run_id)
        run = client.get_run(run_id)
        walker = Lineage(client.store, client.config)
        doc = walker.of_run(run_id)
        with _reading(client) as conn:
            rows = conn.execute(
                "SELECT run_id, name, status, start_time FROM runs "
                "WHERE parent_run_id = ? AND lifecycle_stage = 'active' "
                "ORDER BY start_time DESC, run_id",
                (run_id,),
            ).fetchall()
        children = [{"id": r[0], "name": r[1], "status": r[2], "start_time": r[3]} for r in rows]
        parent = None
        if run.parent_run_id is not None:
            tip = client.store.tip(run_ref(run.parent_run_id))
            name = client.get_run(run.parent_run_id).name if tip is not None else None
            parent = {"id": run.parent_run_id, "name": name, "present": tip is not None}
        code = doc["code"]
        if code is not None and code.get("present"):
            code["message"] = client.store.commit_info(code["commit"]).message
        models = logged_models(run.tags)
        return _json(
            {
                "run": run.model_dump(mode="json"),
                "experiment": client.get_experiment(run.experiment_id).model_dump(mode="json"),
                "commit": doc["commit"],
                "commits": doc["commits"],
                "code": code,
                "parent": parent,
                "children": children,
                "artifacts": [a.model_dump(mode="json") for a in client.list_artifacts(run_id)],
                "models": _models_of_run(registry, run_id),
                # The mlflow.log-model.history tag read for people: None when absent
                # or not MLflow's JSON list (the tag is then shown as it is).
                "logged_models": None if models is None else [m.to_plain() for m in models],
            }
        )

    @router.post("/metric-histories")
    def metric_histories(body: MetricHistories) -> Response:
        """Every point of each (run, key) pair that exists, as parallel arrays."""
        if len(body.run_ids) * len(body.keys) > MAX_SERIES:
            raise InvalidInput(f"ask for at most {MAX_SERIES} (run, metric) pairs at once")
        series = []
        for run_id in body.run_ids:
            run = client.get_run(run_id)
            for key in body.keys:
                if key not in run.metrics:
                    continue
                points = client.get_metric_history(run_id, key)
                series.append(
                    {
                        "run_id": run_id,
                        "run_name": run.name,
                        "key": key,
                        "steps": [p.step for p in points],
                        "values": [p.value for p in points],
                        "timestamps": [p.timestamp for p in points],
                    }
                )
        return _json({"series": series})

    @router.get("/commits/{sha}")
    def commit(sha: str) -> Response:
        """A code commit: its message, author, time and parents."""
        if len(sha) != 40 or not client.store.has_object(sha):
            raise NotFound(f"no commit {sha} in this repository")
        info = client.store.commit_info(sha)
        runs = []
        with _reading(client) as conn:
            for row in conn.execute(
                "SELECT run_id, name, status, source_dirty FROM runs WHERE source_commit = ? "
                "AND lifecycle_stage = 'active' ORDER BY start_time DESC LIMIT 100",
                (sha,),
            ):
                runs.append({"id": row[0], "name": row[1], "status": row[2], "dirty": row[3]})
        return _json(
            {
                "sha": info.sha,
                "parents": list(info.parents),
                "author": info.author,
                "time": info.time,
                "iso_time": iso_time(info.time),
                "subject": info.message.splitlines()[0] if info.message else "",
                "message": info.message,
                "runs": runs,
            }
        )

    @router.get("/models")
    def models() -> Response:
        """Registered models with their version count and what each stage declares."""
        stages = _stage_declarations(client)
        out = []
        for model in registry.list_models():
            versions = registry.versions(model.name)
            out.append(
                {
                    **model.model_dump(mode="json"),
                    "versions": len(versions),
                    "latest": versions[-1].version if versions else None,
                    "stages": {
                        stage: declared[model.name].model_dump(mode="json")["versions"]
                        for stage, declared in stages.items()
                        if model.name in declared
                    },
                }
            )
        return _json(out)

    @router.get("/models/{name}")
    def model_page(name: str) -> Response:
        """A model's versions, each stage's declaration and the stage timeline."""
        model = registry.get_model(name)
        versions = registry.versions(name, include_deleted=True)
        stages = _stage_declarations(client)
        walker = Lineage(client.store, client.config)
        timeline = [event.document() for event in walker.stage_events(name)]
        return _json(
            {
                "model": model.model_dump(mode="json"),
                "versions": [v.model_dump(mode="json") for v in versions],
                "stages": {
                    stage: declared[name].model_dump(mode="json")
                    for stage, declared in stages.items()
                    if name in declared
                },
                "timeline": timeline,
            }
        )

    @router.get("/models/{name}/versions/{version}")
    def version_page(name: str, version: int) -> Response:
        """A version's lineage: its stages and their history, its run, the run's code."""
        return _json(Lineage(client.store, client.config).of_version(name, version))

    @router.get("/lineage")
    def lineage_of(target: str) -> Response:
        """``gitml lineage TARGET --json``: a model version, a run or a stage."""
        return _json(lineage(client, target, client.config))

    return router


def _stage_declarations(client: Client) -> dict[str, dict[str, Any]]:
    """Stage name to {model: declaration} for every stage branch that exists."""
    out: dict[str, dict[str, Any]] = {}
    names = list(client.config.stages)
    for ref in client.store.refs(STAGES):
        stage = ref[len(STAGES) :]
        if "/" not in stage and stage not in names:
            names.append(stage)
    for stage in names:
        if client.store.tip(stage_branch(stage)) is None:
            continue
        try:
            out[stage] = declarations(client.store, stage)
        except GitmlError:
            continue
    return out


def _models_of_run(registry: Registry, run_id: str) -> list[dict[str, Any]]:
    """Model versions registered from this run."""
    found = []
    for model in registry.list_models():
        for version in registry.versions(model.name):
            if version.run_id == run_id:
                found.append({"name": version.name, "version": version.version})
    return found


def _column(spec: str) -> tuple[str, str]:
    kind, _, key = spec.partition(".")
    if kind not in _COLUMN_KINDS or not key:
        raise InvalidInput(
            f"column '{spec}' is not 'params.<key>', 'metrics.<key>' or 'tags.<key>'"
        )
    return kind, key


def _runs_table(client: Client, body: RunsTable) -> dict[str, Any]:
    where, params = compile_where(parse_filter(body.filter))
    order, order_params = compile_order(parse_order_by(body.order_by))
    clauses = [VIEW_TYPES[body.run_view_type], f"({where})"]
    experiment_ids: list[str] | None = None
    if body.experiment_ids is not None:
        experiment_ids = [client._experiment_ref(e) for e in body.experiment_ids]
        clauses.append(f"r.experiment_id IN ({_marks(len(experiment_ids)) or 'NULL'})")
        params = [*params, *experiment_ids]
    condition = " AND ".join(clauses)
    with _reading(client) as conn:
        keys = _keys(conn, experiment_ids) if body.with_keys or body.columns is None else None
        specs = body.columns
        if specs is None:
            assert keys is not None
            specs = [
                *(f"metrics.{k}" for k in keys["metrics"][:DEFAULT_COLUMNS]),
                *(f"params.{k}" for k in keys["params"][:DEFAULT_COLUMNS]),
            ]
        columns = [_column(spec) for spec in specs]
        (total,) = conn.execute(f"SELECT count(*) FROM runs r WHERE {condition}", params).fetchone()
        ids = [
            row[0]
            for row in conn.execute(
                f"SELECT r.run_id FROM runs r WHERE {condition} ORDER BY {order} LIMIT ? OFFSET ?",
                [*params, *order_params, body.limit, body.offset],
            )
        ]
        rows = _rows(conn, ids, columns)
    out: dict[str, Any] = {
        "total": total,
        "offset": body.offset,
        "fields": [
            "id",
            "name",
            "status",
            "start_time",
            "end_time",
            "user",
            "parent_run_id",
            "dirty",
            "lifecycle_stage",
            *specs,
        ],
        "rows": rows,
    }
    if body.with_keys and keys is not None:
        out["keys"] = keys
    return out


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
    for kind in ("params", "metrics", "tags"):
        wanted = sorted({key for k, key in columns if k == kind})
        if not wanted:
            continue
        value = "CASE WHEN is_nan THEN 'NaN' ELSE value END" if kind == "metrics" else "value"
        for run_id, key, found in conn.execute(
            f"SELECT run_id, key, {value} FROM {kind} "
            f"WHERE run_id IN ({marks}) AND key IN ({_marks(len(wanted))})",
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
    for kind in ("params", "metrics", "tags"):
        if experiment_ids is None:
            sql, args = f"SELECT DISTINCT key FROM {kind} ORDER BY key", []
        else:
            sql = (
                f"SELECT DISTINCT key FROM {kind} WHERE run_id IN (SELECT run_id FROM runs "
                f"WHERE experiment_id IN ({_marks(len(experiment_ids)) or 'NULL'})) ORDER BY key"
            )
            args = experiment_ids
        out[kind] = [row[0] for row in conn.execute(sql, args)]
    return out


def _marks(n: int) -> str:
    return ",".join("?" * n)
