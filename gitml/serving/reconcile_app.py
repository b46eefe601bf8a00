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

Tokens come from the token file every gitml server reads (``auth.read_tokens``):
scoring takes a read or a write token, the webhook a write token.
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
from gitml.serving import scoring
from gitml.serving.reconcile import Reconciler
from gitml.serving.scoring_app import (
    JSON,
    OFFLOAD_ABOVE_BYTES,
    UNAUTHENTICATED,
    WWW_AUTHENTICATE,
    ASGIApp,
    ClientDisconnect,
    Receive,
    Scope,
    Send,
    authorised,
    error_headers,
    header,
    read_body,
    respond,
    send_error,
)

VERSION_HEADER = "x-gitml-version"


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON, headers=headers)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json({"error_code": code, "message": message}, status, headers)


def _failure(status: int, code: str, message: str) -> scoring.ScoringError:
    return scoring.ScoringError(message, status=status, error_code=code)


def _unauthenticated() -> Response:
    return Response(
        UNAUTHENTICATED.body(),
        status_code=UNAUTHENTICATED.status,
        media_type=JSON,
        headers={"WWW-Authenticate": "Bearer"},
    )


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
    expected = tokens

    # Scoring is answered in plain ASGI, before Starlette's router, Request and
    # Response: about 30 us of a 0.7 ms one-row request (benchmarks/reconcile.py),
    # the reconciler's margin against `gitml models serve`.
    async def score(scope: Scope, receive: Receive, send: Send, name: str | None) -> None:
        if not authorised(scope, expected):
            await send_error(send, UNAUTHENTICATED, WWW_AUTHENTICATE)
            return
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
        headers: tuple[tuple[bytes, bytes], ...] = (
            (b"x-gitml-model-version", f"{name}/{chosen.version}".encode()),
            (b"x-gitml-revision", revision.commit.encode()),
        )
        try:
            body = await read_body(scope, receive, max_body_bytes, body_seconds)
            content_type = header(scope, b"content-type")
            predictor = chosen.predictor
            if len(body) > OFFLOAD_ABOVE_BYTES:
                result = await run_in_threadpool(scoring.score, predictor, body, content_type)
            else:
                result = scoring.score(predictor, body, content_type)
            status = 200
        except scoring.ScoringError as exc:
            status, result, headers = exc.status, exc.body(), error_headers(exc, headers)
        except ClientDisconnect:
            return  # nobody is left to read an answer
        await respond(send, result, status, JSON, headers)
        reconciler.metrics.observe(name, chosen.version, status, time.perf_counter() - started)

    loops: list[threading.Thread] = []

    async def ping(request: Request) -> Response:
        alive = all(loop.is_alive() for loop in loops)
        return Response(b"\n", status_code=200 if alive else 503)

    async def health(request: Request) -> Response:
        current = reconciler.current
        if current is not None and reconciler.synced:
            return _json({"ready": True, "revision": current.commit})
        return _json(
            {"ready": False, "reason": reconciler.last_error or "not synced yet"}, status=503
        )

    async def status(request: Request) -> Response:
        return _json(reconciler.status())

    async def metrics(request: Request) -> Response:
        return Response(reconciler.prometheus(), media_type="text/plain; version=0.0.4")

    async def hook(request: Request) -> Response:
        if expected is None:
            return _error(
                403, "PERMISSION_DENIED", "start the reconciler with --token-file to use webhooks"
            )
        if not authorised(request.scope, expected, "write"):
            if authorised(request.scope, expected):
                return _error(403, "PERMISSION_DENIED", "the webhook needs a write token")
            return _unauthenticated()
        stalled = reconciler.stalled()
        if reconciler.wake() and stalled is not None:
            answer = {"reconcile": "triggered", "restarted": f"a stalled fetch ({stalled})"}
            return _json(answer, status=202)
        return _json({"reconcile": "triggered"}, status=202)

    async def version(request: Request) -> Response:
        return Response(__version__, media_type="text/plain")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not run_loop:
            yield
            return
        loop = threading.Thread(
            target=reconciler.run, args=(interval,), name="gitml-reconcile", daemon=True
        )
        loop.start()
        loops.append(loop)
        try:
            yield
        finally:
            reconciler.stop()
            loop.join(timeout=30)

    routes = Starlette(
        routes=[
            Route("/ping", ping, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/status", status, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/hooks/git", hook, methods=["POST"]),
            Route("/version", version, methods=["GET"]),
        ],
        lifespan=lifespan,
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
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
                await score(scope, receive, send, name)
                return
        await routes(scope, receive, send)

    return app
