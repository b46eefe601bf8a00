"""The JSON the web UI's pages are drawn from, under ``/api/v1/ui``.

Each page of the UI is one or two of these calls, so every view's data is
also an API answer. They read through the same library as the rest of the
REST API and the CLI: ``gitml.query.lookups`` and the query index for
anything over many runs, the tracking ``Client`` for one run, ``Registry``
and ``Lineage`` for models and stages. Like the tracking app's, the routes
are module-level functions that take the app's ``Client`` and ``Registry``.

The runs table is the one view that must stay fast at 10,000 runs (MLflow's
UI freezes there). ``runs-table`` answers one
window of rows, only the columns shown, as arrays, with the total count, so
the page draws the first rows after one small query whatever the number of
runs, and fetches further windows as the table scrolls.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from gitml.errors import GitmlError, InvalidInput, NotFound
from gitml.format import layout
from gitml.models.mlmodel import logged_models
from gitml.query import lookups
from gitml.query.grammar import FilterSyntaxError
from gitml.registry.declarations import declarations, stage_tips, tracked_stages
from gitml.registry.lineage import Lineage, iso_time, lineage
from gitml.registry.versions import Registry
from gitml.server.depends import AppClient, AppRegistry, Read
from gitml.tracking.client import Client

PREFIX = "/api/v1/ui"
MAX_WINDOW = 5_000  # rows in one runs-table answer
MAX_COLUMNS = 100
DEFAULT_COLUMNS = 5  # of metrics, then of params, when the page names none
MAX_SERIES = 400  # (run, metric) histories in one metric-histories answer


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


# Every route reads: each is behind the read-token check.
run_pages = APIRouter(prefix=PREFIX, dependencies=[Read])
model_pages = APIRouter(prefix=PREFIX, dependencies=[Read])


# -- experiments, runs, code ----------------------------------------------------------------


@run_pages.get("/experiments")
def experiments(client: AppClient) -> Response:
    """Every experiment with its number of runs and its last activity (ms)."""
    activity = lookups.experiment_activity(client.index)
    none = lookups.Activity(0, 0, None)
    out = []
    for experiment in client.list_experiments():
        found = activity.get(experiment.id, none)
        out.append(
            {
                **experiment.model_dump(mode="json"),
                "active_runs": found.active,
                "deleted_runs": found.deleted,
                "last_activity": found.last if found.last is not None else experiment.creation_time,
            }
        )
    out.sort(key=lambda e: -int(e["last_activity"]))
    return _json(out)


@run_pages.post("/runs-table")
def runs_table(body: RunsTable, client: AppClient) -> Response:
    """One window of the runs matching a filter, as rows of the chosen columns."""
    experiment_ids = None
    if body.experiment_ids is not None:
        experiment_ids = [client.find_experiment_id(e) for e in body.experiment_ids]
    try:
        window = lookups.runs_window(
            client.index,
            experiment_ids=experiment_ids,
            filter_string=body.filter,
            order_by=body.order_by,
            run_view_type=body.run_view_type,
            columns=body.columns,
            offset=body.offset,
            limit=body.limit,
            with_keys=body.with_keys,
            default_columns=DEFAULT_COLUMNS,
        )
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
    out: dict[str, Any] = {
        "total": window.total,
        "offset": body.offset,
        "fields": window.fields,
        "rows": window.rows,
    }
    if window.keys is not None:
        out["keys"] = window.keys
    return _json(out)


@run_pages.get("/runs/{run_id}")
def run_page(run_id: str, client: AppClient, registry: AppRegistry) -> Response:
    """A run with its code commit, parent, children, artifacts and metric keys."""
    run_id = client.resolve_run_id(run_id)
    run = client.get_run(run_id)
    walker = Lineage(client.store, client.config)
    doc = walker.of_run(run_id)
    children = [
        {"id": r.id, "name": r.name, "status": r.status, "start_time": r.start_time}
        for r in lookups.run_summaries(client.index, parent_run_id=run_id)
    ]
    parent = None
    if run.parent_run_id is not None:
        tip = client.store.tip(layout.run_ref(run.parent_run_id))
        name = client.get_run(run.parent_run_id).name if tip is not None else None
        parent = {"id": run.parent_run_id, "name": name, "present": tip is not None}
    code = doc["code"]
    if code is not None and code.get("present"):
        code["message"] = client.store.commit_info(code["commit"]).message
    logged = logged_models(run.tags)
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
            "logged_models": None if logged is None else [m.to_plain() for m in logged],
        }
    )


@run_pages.post("/metric-histories")
def metric_histories(body: MetricHistories, client: AppClient) -> Response:
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


@run_pages.get("/commits/{sha}")
def commit(sha: str, client: AppClient) -> Response:
    """A code commit: its message, author, time and parents."""
    if len(sha) != 40 or not client.store.has_object(sha):
        raise NotFound(f"no commit {sha} in this repository")
    info = client.store.commit_info(sha)
    made = lookups.run_summaries(client.index, source_commit=sha, limit=100)
    return _json(
        {
            "sha": info.sha,
            "parents": list(info.parents),
            "author": info.author,
            "time": info.time,
            "iso_time": iso_time(info.time),
            "subject": info.message.splitlines()[0] if info.message else "",
            "message": info.message,
            "runs": [
                {"id": r.id, "name": r.name, "status": r.status, "dirty": r.dirty} for r in made
            ],
        }
    )


# -- models, stages, lineage --------------------------------------------------------------


@model_pages.get("/models")
def models(client: AppClient, registry: AppRegistry) -> Response:
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
                    for stage, (_, declared) in stages.items()
                    if model.name in declared
                },
                "stage_refs": {
                    stage: ref
                    for stage, (ref, declared) in stages.items()
                    if model.name in declared
                },
            }
        )
    return _json(out)


@model_pages.get("/models/{name}")
def model_page(name: str, client: AppClient, registry: AppRegistry) -> Response:
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
                for stage, (_, declared) in stages.items()
                if name in declared
            },
            # The branch each stage was read from: refs/remotes/<remote>/gitml/<stage>
            # when the local gitml/<stage> is missing or behind it.
            "stage_refs": {
                stage: ref for stage, (ref, declared) in stages.items() if name in declared
            },
            "timeline": timeline,
        }
    )


@model_pages.get("/models/{name}/versions/{version}")
def version_page(name: str, version: int, client: AppClient) -> Response:
    """A version's lineage: its stages and their history, its run, the run's code."""
    return _json(Lineage(client.store, client.config).of_version(name, version))


@model_pages.get("/lineage")
def lineage_of(target: str, client: AppClient) -> Response:
    """``gitml lineage TARGET --json``: a model version, a run or a stage."""
    return _json(lineage(client, target, client.config))


ROUTERS = (run_pages, model_pages)


def _stage_declarations(client: Client) -> dict[str, tuple[str, dict[str, Any]]]:
    """Stage name to (the ref read, {model: declaration}) for every stage branch that
    exists here or as a remote-tracking branch (read when the local one is missing or behind)."""
    names = list(client.config.stages)
    names += [stage for stage in tracked_stages(client.store) if stage not in names]
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for stage, tip in stage_tips(client.store, names).items():
        if tip.commit is None:
            continue
        try:
            out[stage] = (tip.ref, declarations(client.store, stage, tip.commit))
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
