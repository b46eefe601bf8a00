"""The scoring server: MLflow's ``/invocations``, ``/ping``, ``/health``, ``/version``.

A thin ASGI layer over :mod:`gitml.serving.scoring`: it reads the body, calls
the scoring core and maps a ``ScoringError`` to its status and JSON body. A
model exception is one 500; the server goes on serving. The token check and
the body cap are the middleware every gitml server shares
(``gitml.server.auth.BearerAuth``, ``gitml.server.limits.BodyCap``).

The app is plain ASGI rather than a Starlette app: four fixed routes need no
router, and not importing Starlette (and anyio) takes about a tenth off the
start-up of ``gitml models serve`` until ``/ping`` answers. It answers as the
Starlette app did: 404 ``Not Found`` and 405 ``Method Not Allowed`` (with
``Allow``) as plain text, HEAD wherever GET is allowed, and a 307 to the
route when the only difference is a trailing slash.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gitml._version import __version__
from gitml.server import auth
from gitml.server.asgi import JSON, ASGIApp, Headers, Receive, Scope, Send, header, respond
from gitml.server.limits import BodyCap
from gitml.serving import scoring

# What ``gitml models serve --workers N`` passes to each worker process, which
# loads the model itself through ``app_from_environment``.
ENV_MODEL_URI = "GITML_SERVE_MODEL_URI"
ENV_TOKEN = "GITML_SERVE_TOKEN"
ENV_TOKEN_FILE = "GITML_SERVE_TOKEN_FILE"
ENV_MAX_BODY = "GITML_SERVE_MAX_BODY_BYTES"

# One worker predicts one request at a time either way; handing a small one to
# the threadpool only adds a thread switch. benchmarks/serving.py, one-row
# iris requests, 4 clients, 2 cores: 344 req/s and p99 25.9 ms through the
# threadpool against 452 req/s and p99 14.4 ms inline. A 1,000-row JSON body
# is about 90 kB, so batches of that size still leave the event loop free.
OFFLOAD_ABOVE_BYTES = 64 * 1024

_GET = ("GET", "HEAD")
_POST = ("POST",)
_TEXT = "text/plain; charset=utf-8"


class ClientDisconnect(Exception):
    """The client went away before its whole body arrived; nothing is answered."""


async def read_body(receive: Receive, timeout: float = scoring.DEFAULT_BODY_SECONDS) -> bytes:
    """The request body, refusing it (408) when it has not all arrived ``timeout`` seconds
    after the request began.

    uvicorn's own timeouts do not cover a body that stops half-way. Its size is
    the app's ``BodyCap``'s to check, as the body arrives.
    """
    chunks: list[bytes] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            message = await asyncio.wait_for(
                receive(), deadline - asyncio.get_running_loop().time()
            )
        except asyncio.TimeoutError:
            raise scoring.RequestTimeout(
                f"the request body did not arrive within {timeout:g} seconds"
            ) from None
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _score(model: scoring.Predictor, body: bytes, content_type: str | None) -> bytes:
    """Parse, predict and serialise: the part that may go to a worker thread."""
    return scoring.predictions_json(
        scoring.predict(model, scoring.parse_request(body, content_type))
    )


def send_error(send: Send, exc: scoring.ScoringError, headers: Headers = ()) -> Awaitable[None]:
    """Answer with ``exc``'s status and MLflow's JSON error body."""
    return respond(send, exc.body(), exc.status, JSON, error_headers(exc, headers))


def error_headers(exc: scoring.ScoringError, headers: Headers = ()) -> Headers:
    """``headers`` for an answer to ``exc``: after a 408 uvicorn must close the connection,
    or it waits on it for the rest of the body."""
    if isinstance(exc, scoring.RequestTimeout):
        return (*headers, (b"connection", b"close"))
    return headers


def tokens_of(token: str | None, tokens: auth.Tokens | None) -> auth.Tokens | None:
    """One token given on its own (``--token``) is a write token; else the file's tokens."""
    return {token: "write"} if token else tokens


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start or stop: the model is loaded before the app is made."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _redirect_target(scope: Scope, path: str) -> bytes:
    """The absolute URL of ``path`` on the host the request named (Starlette's redirect)."""
    host = header(scope, b"host")
    if host is None:
        server = scope.get("server") or ("localhost", None)
        host = server[0] if server[1] is None else f"{server[0]}:{server[1]}"
    url = f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}{path}"
    query = scope.get("query_string", b"")
    return (url + ("?" + query.decode("latin-1") if query else "")).encode("latin-1")


def create_app(
    model: scoring.Predictor | None,
    *,
    token: str | None = None,
    tokens: auth.Tokens | None = None,
    max_body_bytes: int = scoring.DEFAULT_MAX_BODY_BYTES,
    offload_above_bytes: int = OFFLOAD_ABOVE_BYTES,
    body_seconds: float = scoring.DEFAULT_BODY_SECONDS,
) -> ASGIApp:
    """The ASGI app scoring ``model``.

    ``token`` (or any of ``tokens``, from a token file): when given,
    ``/invocations`` needs ``Authorization: Bearer <token>``.
    ``offload_above_bytes``: a request body larger than this is predicted in a
    worker thread, so a big batch does not stall ``/ping`` and other
    connections; a smaller one is predicted on the event loop, where a
    one-row request costs less (see ``OFFLOAD_ABOVE_BYTES``).
    ``body_seconds``: how long a request may take to send its body (then 408).
    """

    async def invocations(scope: Scope, receive: Receive, send: Send) -> None:
        if not await auth.granted(scope, send, "read"):
            return
        if model is None:
            await send_error(
                send,
                scoring.ScoringError(
                    "no model is loaded", status=503, error_code="TEMPORARILY_UNAVAILABLE"
                ),
            )
            return
        try:
            body = await read_body(receive, body_seconds)
            content_type = header(scope, b"content-type")
            if len(body) > offload_above_bytes:
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(None, _score, model, body, content_type)
            else:
                result = _score(model, body, content_type)
        except scoring.ScoringError as exc:
            await send_error(send, exc)
            return
        except ClientDisconnect:
            return
        await respond(send, result)

    async def ping(scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, b"\n", 200 if model is not None else 503, media_type=None)

    async def version(scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, __version__.encode(), media_type=_TEXT)

    routes: dict[str, tuple[tuple[str, ...], ASGIApp]] = {
        "/invocations": (_POST, invocations),
        "/ping": (_GET, ping),
        "/health": (_GET, ping),
        "/version": (_GET, version),
    }

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind != "http":  # websockets: no route takes one
            await send({"type": "websocket.close", "code": 1000})
            return
        path = scope["path"]
        route = routes.get(path)
        if route is None:
            other = path[:-1] if path.endswith("/") else path + "/"
            if path != "/" and other in routes:
                await respond(
                    send, b"", 307, media_type=None,
                    headers=((b"location", _redirect_target(scope, other)),),
                )  # fmt: skip
            else:
                await respond(send, b"Not Found", 404, media_type=_TEXT)
            return
        methods, handler = route
        if scope["method"] not in methods:
            allow = ", ".join(methods).encode()
            await respond(
                send, b"Method Not Allowed", 405, media_type=_TEXT,
                headers=((b"allow", allow),),
            )  # fmt: skip
            return
        await handler(scope, receive, send)

    return BodyCap(auth.BearerAuth(app, tokens_of(token, tokens)), max_body_bytes)


def load_model(uri: str) -> scoring.Predictor:
    """The model at ``uri`` through ``gitml.models.pyfunc.load_model``."""
    # Imported by name: the models package loads the flavors only when asked,
    # and the server must start without them until a model names one.
    pyfunc = importlib.import_module("gitml.models.pyfunc")
    model: scoring.Predictor = pyfunc.load_model(uri)
    return model


def app_from_environment(
    loader: Callable[[str], Any] | None = None,
) -> ASGIApp:
    """An app whose model and settings come from the environment (one per uvicorn worker)."""
    uri = os.environ[ENV_MODEL_URI]
    token_file = os.environ.get(ENV_TOKEN_FILE)
    return create_app(
        (loader or load_model)(uri),
        token=os.environ.get(ENV_TOKEN) or None,
        tokens=auth.read_tokens(Path(token_file)) if token_file else None,
        max_body_bytes=int(os.environ.get(ENV_MAX_BODY, scoring.DEFAULT_MAX_BODY_BYTES)),
    )
