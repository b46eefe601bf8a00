"""The tracking server's REST API, version 1, over one Git repository.

Every route calls the same library the CLI and the Python API use: the
tracking ``Client``, the query index, the ``Registry`` and ``Stages``. The
server commits on the clients' behalf, through the same compare-and-swap
store, so the repository stays an ordinary one anyone can fetch.

Requests and answers are pydantic models, so FastAPI serves an OpenAPI
document (``/api/v1/openapi.json``) that matches what the routes accept.
Errors are ``{"error_code", "message"}`` with the status of the
``GitmlError`` behind them; a malformed body is a 400 naming the field.
Logging is durable when the call returns: ``log-batch`` is one commit before
it answers, and its ``batch_id`` is a trailer of that same commit
(``Gitml-Journal: <batch_id>``), so a batch sent again after a timeout or a
server restart is recognised from the run's history and counts once; there
is no window in which the data is stored and its id is not; a file lock
makes the check and the commit one step across ``--workers`` too.
Request bodies are capped (``max_body_bytes``; artifacts ``max_artifact_bytes``,
counted as they stream, with or without a Content-Length).

The routes are module-level functions, one router per resource (experiments,
runs, artifacts, models, stages), that take the app's ``Client`` and
``Registry`` as parameters; ``create_app`` assembles them with the web UI's
and the middleware every gitml server shares: ``BearerAuth`` (tokens and
their scopes) and ``BodyCap``.
"""

from __future__ import annotations

import fcntl
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from gitml._version import __version__
from gitml.errors import (
    Conflict,
    Corrupt,
    GitmlError,
    InvalidInput,
    InvalidRecord,
    NotFound,
    RefBusy,
)
from gitml.format import layout
from gitml.format import paths as artifact_paths
from gitml.format.layout import EXPERIMENTS, RUNS
from gitml.format.records import Experiment, ModelVersion, RegisteredModel, Run, StageDeclaration
from gitml.registry.stages import Stages
from gitml.registry.versions import Registry
from gitml.server.asgi import Scope as ASGIScope
from gitml.server.auth import BearerAuth, LoopbackHostOnly, Refused, Scope, read_tokens
from gitml.server.depends import AppClient, AppRegistry, Read, Write
from gitml.server.limits import BodyCap, BodyTooLarge
from gitml.server.ui import attach_ui
from gitml.tracking import validation
from gitml.tracking.backend import ExperimentChange
from gitml.tracking.client import Client
from gitml.tracking.entities import Metric, metric_from_json, metric_to_json
from gitml.tracking.git_backend import GitBackend

PREFIX = "/api/v1"
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_ARTIFACT_BYTES = 2 * 1024 * 1024 * 1024
_CHUNK = 1024 * 1024
__all__ = ["PREFIX", "ServerSettings", "create_app", "read_tokens"]


class _Body(BaseModel):
    # Strict: "5" is not a number and 1 is not a string; unknown fields are refused.
    model_config = ConfigDict(extra="forbid", strict=True)


class CreateExperiment(_Body):
    name: str = Field(min_length=1, max_length=500)
    tags: dict[str, str] = Field(default_factory=dict)


class UpdateExperiment(_Body):
    """One change of an experiment's record (the ``Client`` changes its runs itself)."""

    name: str | None = Field(default=None, min_length=1, max_length=500)
    lifecycle_stage: Literal["active", "deleted"] | None = None
    set_tags: dict[str, str] = Field(default_factory=dict)
    delete_tags: list[str] = Field(default_factory=list)


class CreateRun(_Body):
    experiment_id: str | None = None
    run_name: str | None = None
    start_time: int | None = Field(default=None, ge=0, le=validation.MAX_INTEGER)
    tags: dict[str, str] = Field(default_factory=dict)
    parent_run_id: str | None = None
    entry_point: str | None = None


class UpdateRun(_Body):
    status: Literal["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"] | None = None
    end_time: int | None = Field(default=None, ge=0, le=validation.MAX_INTEGER)
    run_name: str | None = None


class MetricPoint(_Body):
    key: str = Field(min_length=1, max_length=validation.MAX_KEY_LENGTH)
    value: float | Literal["NaN", "Infinity", "-Infinity"]
    step: int = Field(default=0, ge=0, le=validation.MAX_INTEGER)
    timestamp: int | None = Field(default=None, ge=0, le=validation.MAX_INTEGER)


class LogBatch(_Body):
    metrics: list[MetricPoint] = Field(
        default_factory=list, max_length=validation.MAX_METRICS_PER_BATCH
    )
    params: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    batch_id: str | None = Field(
        default=None,
        max_length=128,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="A client-chosen id: a batch sent again with the same id is applied once.",
    )


class LogBatchResult(BaseModel):
    applied: bool
    reason: str | None = None


class SearchRuns(_Body):
    experiment_ids: list[str] | None = None
    filter: str = ""
    order_by: list[str] = Field(default_factory=list)
    max_results: int = Field(default=1000, ge=1, le=50_000)
    page_token: str | None = None
    run_view_type: Literal["ACTIVE_ONLY", "DELETED_ONLY", "ALL"] = "ACTIVE_ONLY"


class ErrorAnswer(BaseModel):
    """What every 4xx and 5xx answer holds."""

    error_code: str
    message: str


# Documented on every route, so the OpenAPI document names each answer a client can get.
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorAnswer, "description": what}
    for status, what in [
        (400, "Malformed input; the message names the field"),
        (401, "No token, or an unknown one"),
        (403, "A read token on a route that writes"),
        (404, "No such run, experiment, model, version, artifact or route"),
        (409, "A conflict with what is recorded (a param that cannot change, a name taken)"),
        (413, "A request body over the limit"),
        (422, "A stored record that fails its schema"),
        (503, "A ref other writers kept busy: nothing was written, send it again"),
    ]
}


class RunsPage(BaseModel):
    runs: list[dict[str, Any]]
    next_page_token: str | None = None


class MetricHistory(BaseModel):
    key: str
    points: list[dict[str, Any]]


class ArtifactEntry(BaseModel):
    path: str
    sha256: str
    size: int
    storage: str


class CreateModel(_Body):
    name: str
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class RegisterVersion(_Body):
    source: str = Field(description="runs:/<run_id>/<path> or models:/<name>/<version>")
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class UpdateVersion(_Body):
    description: str | None = None
    set_tags: dict[str, str] = Field(default_factory=dict)
    delete_tags: list[str] = Field(default_factory=list)


class Assign(_Body):
    model: str
    version: int = Field(ge=1)
    weight: int = Field(default=100, ge=1, le=100)
    message: str | None = None
    propose: bool = False
    archive_existing: bool = False


class AssignResult(BaseModel):
    stage: str
    model: str
    ref: str
    commit: str
    declaration: dict[str, Any]
    archived: list[int]


class StageChangeOut(BaseModel):
    commit: str
    time: int
    author: str
    subject: str
    model: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    merge: str | None


_STATUS = {
    NotFound: 404,
    Conflict: 409,
    InvalidInput: 400,
    InvalidRecord: 422,
    Corrupt: 409,
    RefBusy: 503,  # nothing was written: the client sends it again
    BodyTooLarge: 413,
}


@dataclass
class ServerSettings:
    repo: Path
    tokens: dict[str, Scope] | None = None  # None: no authentication (loopback only)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_artifact_bytes: int = DEFAULT_MAX_ARTIFACT_BYTES
    # Refuse a request whose Host is not a loopback name (a server without tokens).
    loopback_only: bool = False
    # Every route that writes answers 403 (``gitml ui`` unless --allow-writes).
    read_only: bool = False


class _AppliedBatches:
    """Which batch ids a run's commits carry, learnt from its history and kept up to date.

    The id of an applied batch is a ``Gitml-Journal`` trailer of the commit
    that applied it, so the answer survives restarts and is right whichever
    process (another worker, a local client) committed since: each check reads
    only the commits added since the tip seen last.
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self._seen: dict[str, set[str]] = {}
        self._tips: dict[str, str] = {}

    def contains(self, run_id: str, batch_id: str) -> bool:
        tip = self.client.store.tip(RUNS + run_id)
        if tip is None:
            raise NotFound(f"no run with id '{run_id}'")
        known = self._tips.get(run_id)
        if tip != known:
            seen = self._seen.setdefault(run_id, set())
            for commit in self.client.store.history(
                tip,
                stop=lambda c: (
                    c.sha == known or not layout.has_trailer(c.message, layout.RUN, run_id)
                ),
            ):
                trailers = layout.trailers(commit.message)
                seen.update(value for key, value in trailers if key == layout.JOURNAL)
            self._tips[run_id] = tip
        return batch_id in self._seen.get(run_id, ())

    def add(self, run_id: str, batch_id: str) -> None:
        self._seen.setdefault(run_id, set()).add(batch_id)
        tip = self.client.store.tip(RUNS + run_id)
        if tip is not None:
            self._tips[run_id] = tip


class _BatchLock:
    """Held while a batch id is checked and its commit made, across ``--workers`` too.

    A thread lock for this process's threads and an ``flock`` for the other
    workers: a batch resent to another worker while the first still commits it
    waits, then finds its id in the run's history.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._threads = threading.Lock()

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._threads, open(self.path, "a") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@dataclass
class _Batches:
    """Which batch ids are applied, and the lock held while one is checked and committed."""

    applied: _AppliedBatches
    lock: _BatchLock


async def _batches(request: Request) -> _Batches:
    batches: _Batches = request.app.state.batches
    return batches


Batches = Annotated[_Batches, Depends(_batches)]


# -- errors ---------------------------------------------------------------------------


async def gitml_error(request: Request, exc: Exception) -> JSONResponse:
    status = next((s for t, s in _STATUS.items() if isinstance(exc, t)), 500)
    code = {
        400: "INVALID_PARAMETER_VALUE",
        404: "RESOURCE_DOES_NOT_EXIST",
        409: "RESOURCE_CONFLICT",
        413: "REQUEST_LIMIT_EXCEEDED",
        422: "INVALID_STATE",
        503: "TEMPORARILY_UNAVAILABLE",
    }.get(status, "INTERNAL_ERROR")
    return _error(status, code, str(exc))


async def refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Refused)
    answer = _error(exc.status, exc.error_code, exc.message)
    answer.headers.update({k.decode(): v.decode() for k, v in exc.headers})
    return answer


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "ENDPOINT_NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(
        exc.status_code, "BAD_REQUEST"
    )
    message = f"{request.method} {request.url.path}: {exc.detail}"
    answer = _error(exc.status_code, code, message)
    answer.headers.update(exc.headers or {})  # 405's Allow
    return answer


async def bad_body(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return _error(400, "INVALID_PARAMETER_VALUE", f"{where}: {first.get('msg', 'invalid')}")


# -- server -----------------------------------------------------------------------------

service = APIRouter()


@service.get("/health", include_in_schema=False)
def health() -> Response:
    return Response("OK", media_type="text/plain")


@service.get(f"{PREFIX}/version")
def version() -> dict[str, str]:
    return {"version": __version__}


# -- experiments ----------------------------------------------------------------------

experiments = APIRouter(prefix=PREFIX)


@experiments.get("/experiments", dependencies=[Read])
def list_experiments(client: AppClient) -> list[Experiment]:
    return client.list_experiments()


@experiments.post("/experiments", dependencies=[Write], status_code=201)
def create_experiment(body: CreateExperiment, client: AppClient) -> Experiment:
    return client.get_experiment(client.create_experiment(body.name, body.tags))


@experiments.get("/experiments/{id_or_name}", dependencies=[Read])
def get_experiment(id_or_name: str, client: AppClient) -> Experiment:
    """An experiment by id, or else by name (a 404 when neither exists)."""
    if client.store.tip(EXPERIMENTS + id_or_name) is not None:
        return client.get_experiment(id_or_name)
    found = client.get_experiment_by_name(id_or_name)
    if found is None:
        raise NotFound(f"no experiment with id or name '{id_or_name}'")
    return found


@experiments.patch("/experiments/{experiment_id}", dependencies=[Write])
def update_experiment(experiment_id: str, body: UpdateExperiment, client: AppClient) -> Experiment:
    change = ExperimentChange(
        None if body.name is None else validation.experiment_name(body.name),
        body.lifecycle_stage,
        validation.tags(body.set_tags),
        tuple(body.delete_tags),
    )
    client.backend.update_experiment(experiment_id, change)
    return client.get_experiment(experiment_id)


@experiments.get("/default-experiment", dependencies=[Write])
def default_experiment(client: AppClient) -> Experiment:
    """The experiment runs go to when none is named (created on first use)."""
    return client.get_experiment(client.get_or_create_experiment_id(None))


@experiments.get("/run-counts", dependencies=[Read])
async def run_counts(client: AppClient) -> dict[str, dict[str, int]]:
    """Experiment id to its number of active and deleted runs."""
    return await run_in_threadpool(client.run_counts)


@experiments.get("/broken-records", dependencies=[Read])
async def broken_records(client: AppClient) -> list[str]:
    """Run records the query index skipped because they fail validation."""

    def refreshed() -> list[str]:
        client.index.refresh()
        return client.broken_records()

    return await run_in_threadpool(refreshed)


# -- runs -------------------------------------------------------------------------------

runs = APIRouter(prefix=PREFIX)


@runs.post("/runs", dependencies=[Write], status_code=201, response_model=Run)
def create_run(body: CreateRun, client: AppClient) -> Response:
    run = client.create_run(
        body.experiment_id,
        body.run_name,
        body.start_time,
        body.tags,
        parent_run_id=body.parent_run_id,
        entry_point=body.entry_point,
        commit=True,
    )
    return _run_answer(run, 201)


@runs.get("/runs/{run_id}", dependencies=[Read], response_model=Run)
def get_run(run_id: str, client: AppClient) -> Response:
    return _run_answer(client.get_run(client.resolve_run_id(run_id)))


@runs.patch("/runs/{run_id}", dependencies=[Write], response_model=Run)
def update_run(run_id: str, body: UpdateRun, client: AppClient) -> Response:
    if body.status in ("FINISHED", "FAILED", "KILLED"):
        client.set_terminated(run_id, body.status, body.end_time)
        if body.run_name is not None:
            client.update_run(run_id, name=body.run_name)
    elif body.status is not None or body.run_name is not None:
        client.update_run(run_id, status=body.status, name=body.run_name)
    return _run_answer(client.get_run(run_id))


@runs.delete("/runs/{run_id}", dependencies=[Write], status_code=204)
def delete_run(run_id: str, client: AppClient) -> Response:
    client.delete_run(run_id)
    return Response(status_code=204)


@runs.post("/runs/{run_id}/restore", dependencies=[Write], response_model=Run)
def restore_run(run_id: str, client: AppClient) -> Response:
    client.restore_run(run_id)
    return _run_answer(client.get_run(run_id))


@runs.delete("/runs/{run_id}/tags/{key:path}", dependencies=[Write], response_model=Run)
def delete_tag(run_id: str, key: str, client: AppClient) -> Response:
    client.delete_tag(run_id, key)
    return _run_answer(client.get_run(run_id))


@runs.post("/runs/{run_id}/log-batch", dependencies=[Write])
def log_batch(run_id: str, body: LogBatch, client: AppClient, batches: Batches) -> LogBatchResult:
    """Metrics, params and tags in one commit, made before this answers.

    A ``batch_id`` already among the run's commits is not applied again.
    """
    applied, batch_lock = batches.applied, batches.lock
    now = client.now()
    points = [
        Metric(
            m.key, metric_from_json(m.value), now if m.timestamp is None else m.timestamp, m.step
        )
        for m in body.metrics
    ]
    with batch_lock():
        if body.batch_id is not None and applied.contains(run_id, body.batch_id):
            return LogBatchResult(applied=False, reason="batch_id was applied before")
        # One commit with the batch id as its Gitml-Journal trailer: the data
        # and its id land together. When the commit fails (a full disk, a busy
        # ref) the id is not recorded, so the client's resend is applied; when
        # it lands without a param the run contradicts, the next check finds
        # the id in the run's history.
        client.log_batch(run_id, points, body.params, body.tags, batch_id=body.batch_id)
        if body.batch_id is not None:
            applied.add(run_id, body.batch_id)
    return LogBatchResult(applied=True)


@runs.get("/runs/{run_id}/metrics/{key:path}", dependencies=[Read])
def metric_history(run_id: str, key: str, client: AppClient) -> MetricHistory:
    points = client.get_metric_history(run_id, key)
    return MetricHistory(
        key=key,
        points=[
            {"value": metric_to_json(p.value), "step": p.step, "timestamp": p.timestamp}
            for p in points
        ],
    )


@runs.post(
    "/runs/search",
    dependencies=[Read],
    response_model=RunsPage,
    responses={200: {"model": RunsPage}},
)
async def search(body: SearchRuns, client: AppClient) -> Response:
    """Runs matching an MLflow filter string (the CLI's grammar and query engine)."""
    page = await run_in_threadpool(
        client.search_runs,
        body.experiment_ids,
        body.filter,
        body.run_view_type,
        body.max_results,
        body.order_by,
        body.page_token,
    )
    # Encoded directly: a page of 1,000 runs through FastAPI's generic
    # encoder costs more than the query itself.
    data = {
        "runs": [_run_json(run) for run in page],
        "next_page_token": page.token,
    }
    return Response(orjson.dumps(data), media_type="application/json")


# -- artifacts --------------------------------------------------------------------------

artifacts = APIRouter(prefix=PREFIX)


@artifacts.get("/runs/{run_id}/artifacts", dependencies=[Read])
def list_artifacts(
    run_id: str, client: AppClient, path: Annotated[str | None, Query()] = None
) -> list[ArtifactEntry]:
    return [
        ArtifactEntry(path=a.path, sha256=a.sha256, size=a.size, storage=a.storage)
        for a in client.list_artifacts(run_id, path)
    ]


@artifacts.put("/runs/{run_id}/artifacts/{path:path}", dependencies=[Write])
async def upload_artifact(
    run_id: str, path: str, request: Request, client: AppClient
) -> ArtifactEntry:
    """Store the body as the artifact ``path`` (streamed to disk, then one commit)."""
    # Its size is capped as it streams by the app's BodyCap (max_artifact_bytes).
    clean = artifact_paths.clean_path(path)
    # A missing run is a 404 before anything is read.
    await run_in_threadpool(client.get_run, run_id)
    folder = Path(tempfile.mkdtemp(prefix="upload-", dir=_incoming(client)))
    try:
        target = folder / Path(clean).name
        with open(target, "wb") as f:
            async for chunk in request.stream():
                f.write(chunk)
        parent = str(Path(clean).parent)
        await run_in_threadpool(
            client.log_artifact, run_id, target, None if parent == "." else parent
        )
    finally:
        for file in folder.iterdir():
            file.unlink()
        folder.rmdir()
    listed = await run_in_threadpool(client.list_artifacts, run_id, clean)
    entry = next(a for a in listed if a.path == clean)
    return ArtifactEntry(
        path=entry.path, sha256=entry.sha256, size=entry.size, storage=entry.storage
    )


@artifacts.get("/runs/{run_id}/artifacts/{path:path}", dependencies=[Read])
def download_artifact(run_id: str, path: str, client: AppClient) -> StreamingResponse:
    data = client.read_artifact(run_id, path)  # checked against its sha256

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(data), _CHUNK):
            yield data[start : start + _CHUNK]

    return StreamingResponse(
        chunks(),
        media_type="application/octet-stream",
        headers={"Content-Length": str(len(data))},
    )


# -- registry ---------------------------------------------------------------------------

models = APIRouter(prefix=PREFIX)


@models.get("/models", dependencies=[Read])
def list_models(registry: AppRegistry) -> list[RegisteredModel]:
    return registry.list_models()


@models.post("/models", dependencies=[Write], status_code=201)
def create_model(body: CreateModel, registry: AppRegistry) -> RegisteredModel:
    return registry.create_model(body.name, body.description, body.tags)


@models.get("/models/{name}", dependencies=[Read])
def get_model(name: str, registry: AppRegistry) -> RegisteredModel:
    return registry.get_model(name)


@models.get("/models/{name}/versions", dependencies=[Read])
def list_versions(
    name: str, registry: AppRegistry, include_deleted: bool = False
) -> list[ModelVersion]:
    return registry.versions(name, include_deleted=include_deleted)


@models.post("/models/{name}/versions", dependencies=[Write], status_code=201)
def register(name: str, body: RegisterVersion, registry: AppRegistry) -> ModelVersion:
    return registry.register(body.source, name, description=body.description, tags=body.tags)


@models.get("/models/{name}/versions/{version}", dependencies=[Read])
def get_version(name: str, version: int, registry: AppRegistry) -> ModelVersion:
    return registry.get_version(name, version)


@models.patch("/models/{name}/versions/{version}", dependencies=[Write])
def update_version(
    name: str, version: int, body: UpdateVersion, registry: AppRegistry
) -> ModelVersion:
    return registry.update_version(
        name,
        version,
        description=body.description,
        set_tags=body.set_tags,
        delete_tags=body.delete_tags,
    )


@models.delete("/models/{name}/versions/{version}", dependencies=[Write])
def delete_version(name: str, version: int, registry: AppRegistry) -> ModelVersion:
    return registry.delete_version(name, version)


# -- stages -----------------------------------------------------------------------------

stages = APIRouter(prefix=PREFIX)


@stages.get("/stages", dependencies=[Read])
def list_stages(client: AppClient, registry: AppRegistry) -> dict[str, dict[str, StageDeclaration]]:
    declared = Stages(registry, client.config)
    return {stage: declared.show(stage) for stage in client.config.stages}


@stages.get("/stages/{stage}", dependencies=[Read])
def show_stage(
    stage: str, client: AppClient, registry: AppRegistry, at: int | None = None
) -> dict[str, StageDeclaration]:
    return Stages(registry, client.config).show(stage, at=at)


@stages.get("/stages/{stage}/history", dependencies=[Read])
def stage_history(
    stage: str,
    client: AppClient,
    registry: AppRegistry,
    model: str | None = None,
    limit: int = Query(default=100, ge=1, le=10_000),
) -> list[StageChangeOut]:
    changes = []
    for change in Stages(registry, client.config).history(stage, model=model):
        changes.append(
            StageChangeOut(
                commit=change.commit,
                time=change.time,
                author=change.author,
                subject=change.subject,
                model=change.model,
                before=change.before.to_plain() if change.before else None,
                after=change.after.to_plain() if change.after else None,
                merge=change.merge,
            )
        )
        if len(changes) >= limit:
            break
    return changes


@stages.post("/stages/{stage}/assignments", dependencies=[Write], status_code=201)
def assign(stage: str, body: Assign, client: AppClient, registry: AppRegistry) -> AssignResult:
    done = Stages(registry, client.config).assign(
        body.model,
        body.version,
        stage,
        weight=body.weight,
        archive_existing=body.archive_existing,
        message=body.message,
        propose=body.propose,
    )
    return AssignResult(
        stage=done.stage,
        model=done.model,
        ref=done.ref,
        commit=done.commit,
        declaration=done.declaration.to_plain(),
        archived=done.archived,
    )


# -- the app ----------------------------------------------------------------------------

ROUTERS = (service, experiments, runs, artifacts, models, stages)


def create_app(settings: ServerSettings) -> FastAPI:
    """The REST API over ``settings.repo``: the routers above, the web UI, auth and the cap."""
    # Runs created here belong to remote clients: the code the server process
    # happens to stand in is not theirs, so no code commit is recorded.
    client = Client(backend=GitBackend(str(settings.repo), code=None))
    app = FastAPI(
        title="gitml tracking server",
        version=__version__,
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
        responses=_ERRORS,
        exception_handlers={
            GitmlError: gitml_error,
            Refused: refused,
            StarletteHTTPException: http_error,
            RequestValidationError: bad_body,
        },
    )
    app.state.client = client
    app.state.registry = Registry(client)
    app.state.batches = _Batches(
        _AppliedBatches(client), _BatchLock(client.store.data_dir / "server" / "log-batch.lock")
    )
    for router in ROUTERS:
        app.include_router(router)
    attach_ui(app)  # the web UI: /ui/ and /api/v1/ui
    attach_mlflow(app, client, app.state.registry)  # MLflow's REST API
    # The last added runs first: the Host rule, then the cap, then the token.
    app.add_middleware(
        BearerAuth,
        tokens=settings.tokens,
        writes_refused=(
            "this server is read-only (gitml ui: start it with --allow-writes)"
            if settings.read_only
            else None
        ),
    )
    app.add_middleware(BodyCap, limit=partial(_body_limit, settings))
    if settings.loopback_only:
        app.add_middleware(LoopbackHostOnly)
    return app


def _body_limit(settings: ServerSettings, scope: ASGIScope) -> int:
    """Artifact uploads take ``max_artifact_bytes``; every other body ``max_body_bytes``."""
    upload = scope["method"] == "PUT" and "/artifacts/" in scope["path"]
    return settings.max_artifact_bytes if upload else settings.max_body_bytes


def _run_json(run: Run) -> dict[str, Any]:
    data = run.model_dump(mode="python")
    for metric in data["metrics"].values():
        metric["value"] = metric_to_json(metric["value"])
    return data


def _run_answer(run: Run, status: int = 200) -> Response:
    """A run as JSON, its metrics that are not finite as "NaN", "Infinity", "-Infinity"."""
    return Response(orjson.dumps(_run_json(run)), status_code=status, media_type="application/json")


def _incoming(client: Client) -> Path:
    folder = client.store.data_dir / "server" / "incoming"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _error(status: int, code: str, message: str) -> JSONResponse:
    """The error answer every route gives: ``{"error_code", "message"}``."""
    return JSONResponse({"error_code": code, "message": message}, status_code=status)


def attach_mlflow(app: FastAPI, client: Client, registry: Registry) -> None:
    """MLflow's REST API (``/api/2.0/mlflow``) and proxied artifacts, for MLflow's own client."""
    from gitml.mlflow.api import MlflowApi
    from gitml.server.mlflow_routes import mount_mlflow

    mount_mlflow(app, MlflowApi(client, registry))
