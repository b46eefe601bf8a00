"""The reconciler's HTTP face: declared models behind MLflow's protocol, status and metrics.

- ``POST /models/<name>/invocations``: the model's declared versions, split by
  weight; ``X-Gitml-Version: <n>`` pins one (for debugging a canary). The
  answer carries ``X-Gitml-Model-Version: <name>/<n>`` and
  ``X-Gitml-Revision`` so a client can tell who answered.
- ``POST /invocations``: the same, when exactly one model is declared.
- ``GET /health``: readiness, 200 once something is served and the branch's
  tip has been tried (``Reconciler.synced``), else 503 with the reason.
- ``GET /ping``: liveness, 200 while the reconcile loop runs. It does not wait
  for a model: a liveness probe that did would restart a replica that is
  still loading its first revision, or that waits for a fix of a bad one.
- ``GET /status`` (JSON) and ``GET /metrics`` (Prometheus text).
- ``POST /hooks/git``: reconcile now (a push webhook); needs a write token. A
  fetch that has had no answer for a while is killed and started afresh: a
  push webhook means the remote is up.

Tokens come from the token file every gitml server reads (``auth.read_tokens``)
and are checked by the middleware every gitml server shares (``BearerAuth``,
with ``BodyCap`` for the body): scoring takes a read or a write token, the
webhook a write token. The handlers are module-level functions that find the
``Reconciler`` in the app's state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gitml._version import __version__
from gitml.errors import NotFound
from gitml.server import auth
from gitml.server.asgi import (
    JSON,
    ASGIApp,
    Headers,
    Receive,
    Scope,
    Send,
    error_body,
    header,
    respond,
)
from gitml.server.limits import LIMIT_EXCEEDED, BodyCap, BodyTooLarge
from gitml.serving import scoring
from gitml.serving.reconcile import Reconciler
from gitml.serving.scoring_app import (
    OFFLOAD_ABOVE_BYTES,
    ClientDisconnect,
    error_headers,
    read_body,
    send_error,
)

VERSION_HEADER = "x-gitml-version"


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON, headers=headers)


def _failure(status: int, code: str, message: str) -> scoring.ScoringError:
    return scoring.ScoringError(message, status=status, error_code=code)


def _reconciler(request: Request) -> Reconciler:
    reconciler: Reconciler = request.app.state.reconciler
    return reconciler


# -- the routes besides scoring -------------------------------------------------------------


async def ping(request: Request) -> Response:
    loops: list[threading.Thread] = request.app.state.loops
    alive = all(loop.is_alive() for loop in loops)
    return Response(b"\n", status_code=200 if alive else 503)


async def health(request: Request) -> Response:
    reconciler = _reconciler(request)
    current = reconciler.current
    if current is not None and reconciler.synced:
        return _json({"ready": True, "revision": current.commit})
    return _json({"ready": False, "reason": reconciler.last_error or "not synced yet"}, status=503)


async def status(request: Request) -> Response:
    return _json(_reconciler(request).status())


async def metrics(request: Request) -> Response:
    return Response(_reconciler(request).prometheus(), media_type="text/plain; version=0.0.4")


async def hook(request: Request) -> Response:
    auth.requires(request.scope, "write")
    reconciler = _reconciler(request)
    stalled = reconciler.stalled()
    if reconciler.wake() and stalled is not None:
        answer = {"reconcile": "triggered", "restarted": f"a stalled fetch ({stalled})"}
        return _json(answer, status=202)
    return _json({"reconcile": "triggered"}, status=202)


async def version(request: Request) -> Response:
    return Response(__version__, media_type="text/plain")


async def refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, auth.Refused)
    headers = {k.decode(): v.decode() for k, v in exc.headers}
    return _json({"error_code": exc.error_code, "message": exc.message}, exc.status, headers)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """With ``run_loop``, the reconcile loop runs in a thread while the app serves."""
    state = app.state
    if not state.run_loop:
        yield
        return
    reconciler: Reconciler = state.reconciler
    loop = threading.Thread(
        target=reconciler.run, args=(state.interval,), name="gitml-reconcile", daemon=True
    )
    loop.start()
    state.loops.append(loop)
    try:
        yield
    finally:
        reconciler.stop()
        loop.join(timeout=30)


ROUTES = [
    Route("/ping", ping, methods=["GET"]),
    Route("/health", health, methods=["GET"]),
    Route("/status", status, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/hooks/git", hook, methods=["POST"]),
    Route("/version", version, methods=["GET"]),
]


# -- scoring ----------------------------------------------------------------------------------


class ReconcileApp:
    """Scoring (``/invocations``, ``/models/<name>/invocations``) and then ``routes``.

    Scoring is answered in plain ASGI, before Starlette's router, Request and
    Response: about 30 us of a 0.7 ms one-row request (benchmarks/reconcile.py),
    the reconciler's margin against `gitml models serve`.
    """

    def __init__(self, reconciler: Reconciler, routes: ASGIApp, body_seconds: float) -> None:
        self.reconciler = reconciler
        self.routes = routes
        self.body_seconds = body_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            name: str | None = None
            if path.startswith("/models/") and path.endswith("/invocations"):
                name = unquote(path[len("/models/") : -len("/invocations")])
            if path == "/invocations" or (name and "/" not in name):
                if scope["method"] != "POST":
                    allow = ((b"allow", b"POST"),)
                    await respond(
                        send, b"Method Not Allowed", 405, "text/plain; charset=utf-8", allow
                    )
                    return
                await self.score(scope, receive, send, name)
                return
        await self.routes(scope, receive, send)

    async def score(self, scope: Scope, receive: Receive, send: Send, name: str | None) -> None:
        if not await auth.granted(scope, send, "read"):
            return
        reconciler = self.reconciler
        revision = reconciler.current  # held for the whole request: swaps do not touch it
        if revision is None:
            await send_error(
                send, _failure(503, "TEMPORARILY_UNAVAILABLE", "no revision is served yet")
            )
            return
        if name is None:
            if len(revision.models) != 1:
                names = ", ".join(sorted(revision.models)) or "none"
                message = (
                    f"/invocations needs exactly one declared model (declared: {names}); "
                    "use /models/<name>/invocations"
                )
                await send_error(send, _failure(404, "RESOURCE_DOES_NOT_EXIST", message))
                return
            name = next(iter(revision.models))
        route = revision.models.get(name)
        if route is None:
            message = f"model '{name}' is not declared on gitml/{reconciler.stage}"
            await send_error(send, _failure(404, "RESOURCE_DOES_NOT_EXIST", message))
            return
        pinned_text = header(scope, VERSION_HEADER.encode())
        try:
            pinned = int(pinned_text) if pinned_text is not None else None
        except ValueError:
            message = f"{VERSION_HEADER} must be a version number"
            await send_error(send, _failure(400, "BAD_REQUEST", message))
            return
        try:
            chosen = route.pick(pinned)
        except NotFound as exc:
            message = f"model '{name}': {exc}"
            await send_error(send, _failure(404, "RESOURCE_DOES_NOT_EXIST", message))
            return
        started = time.perf_counter()
        headers: Headers = (
            (b"x-gitml-model-version", f"{name}/{chosen.version}".encode()),
            (b"x-gitml-revision", revision.commit.encode()),
        )
        try:
            body = await read_body(receive, self.body_seconds)
            content_type = header(scope, b"content-type")
            predictor = chosen.predictor
            if len(body) > OFFLOAD_ABOVE_BYTES:
                result = await run_in_threadpool(scoring.score, predictor, body, content_type)
            else:
                result = scoring.score(predictor, body, content_type)
            status = 200
        except scoring.ScoringError as exc:
            status, result, headers = exc.status, exc.body(), error_headers(exc, headers)
        except BodyTooLarge as exc:
            # BodyCap answers it; the answer here is the same, for the metrics.
            status, result = 413, error_body(LIMIT_EXCEEDED, str(exc))
        except ClientDisconnect:
            return  # nobody is left to read an answer
        await respond(send, result, status, JSON, headers)
        reconciler.metrics.observe(name, chosen.version, status, time.perf_counter() - started)


def create_app(
    reconciler: Reconciler,
    *,
    interval: float,
    tokens: auth.Tokens | None = None,
    max_body_bytes: int = scoring.DEFAULT_MAX_BODY_BYTES,
    run_loop: bool = True,
    body_seconds: float = scoring.DEFAULT_BODY_SECONDS,
) -> ASGIApp:
    """The ASGI app; with ``run_loop`` its lifespan runs the reconcile loop in a thread."""
    routes = Starlette(routes=ROUTES, lifespan=lifespan, exception_handlers={auth.Refused: refused})
    routes.state.reconciler = reconciler
    routes.state.interval = interval
    routes.state.run_loop = run_loop
    routes.state.loops = []
    # Without a token file scoring is open and the webhook refused: anyone could
    # otherwise make the reconciler fetch.
    writes_refused = (
        "start the reconciler with --token-file to use webhooks" if tokens is None else None
    )
    app = ReconcileApp(reconciler, routes, body_seconds)
    return BodyCap(auth.BearerAuth(app, tokens, writes_refused), max_body_bytes)
