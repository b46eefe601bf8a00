"""The scoring server: MLflow's ``/invocations``, ``/ping``, ``/health``, ``/version``.

A thin ASGI layer over :mod:`gitml.scoring`: it reads the body under a size
cap, calls the scoring core and maps a ``ScoringError`` to its status and JSON
body. A model exception is one 500; the server goes on serving.
"""

from __future__ import annotations

import hmac
import importlib
import json
import os
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import scoring
from .._version import __version__

JSON = "application/json"

# What ``gitml models serve --workers N`` passes to each worker process, which
# loads the model itself through ``app_from_environment``.
ENV_MODEL_URI = "GITML_SERVE_MODEL_URI"
ENV_TOKEN = "GITML_SERVE_TOKEN"
ENV_MAX_BODY = "GITML_SERVE_MAX_BODY_BYTES"

# One worker predicts one request at a time either way; handing a small one to
# the threadpool only adds a thread switch. benchmarks/serving.py, one-row
# iris requests, 4 clients, 2 cores: 344 req/s and p99 25.9 ms through the
# threadpool against 452 req/s and p99 14.4 ms inline. A 1,000-row JSON body
# is about 90 kB, so batches of that size still leave the event loop free.
OFFLOAD_ABOVE_BYTES = 64 * 1024


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) as soon as it passes ``limit`` bytes.

    A declared Content-Length over the cap is refused before anything is read;
    a chunked body is counted as it arrives, so nothing unbounded is buffered.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            scoring.check_size(int(declared), limit)
        except ValueError:
            raise scoring.BadRequest(f"Content-Length '{declared}' is not a number") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        scoring.check_size(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _score(model: scoring.Predictor, body: bytes, content_type: str | None) -> bytes:
    """Parse, predict and serialise: the part that may go to a worker thread."""
    return scoring.predictions_json(
        scoring.predict(model, scoring.parse_request(body, content_type))
    )


def _error(exc: scoring.ScoringError) -> Response:
    return Response(exc.body(), status_code=exc.status, media_type=JSON)


def create_app(
    model: scoring.Predictor | None,
    *,
    token: str | None = None,
    max_body_bytes: int = scoring.DEFAULT_MAX_BODY_BYTES,
    offload_above_bytes: int = OFFLOAD_ABOVE_BYTES,
) -> Starlette:
    """The ASGI app scoring ``model``.

    ``token``: when given, ``/invocations`` needs ``Authorization: Bearer <token>``.
    ``offload_above_bytes``: a request body larger than this is predicted in a
    worker thread, so a big batch does not stall ``/ping`` and other
    connections; a smaller one is predicted on the event loop, where a
    one-row request costs less (see ``OFFLOAD_ABOVE_BYTES``).
    """
    expected = f"Bearer {token}".encode() if token else None

    async def invocations(request: Request) -> Response:
        if expected is not None:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return Response(
                    json.dumps(
                        {
                            "error_code": "UNAUTHENTICATED",
                            "message": "send 'Authorization: Bearer <token>'",
                        }
                    ),
                    status_code=401,
                    media_type=JSON,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        if model is None:
            return _error(
                scoring.ScoringError(
                    "no model is loaded", status=503, error_code="TEMPORARILY_UNAVAILABLE"
                )
            )
        try:
            body = await read_body(request, max_body_bytes)
            content_type = request.headers.get("content-type")
            if len(body) > offload_above_bytes:
                result = await run_in_threadpool(_score, model, body, content_type)
            else:
                result = _score(model, body, content_type)
            return Response(result, media_type=JSON)
        except scoring.ScoringError as exc:
            return _error(exc)

    async def ping(request: Request) -> Response:
        return Response(b"\n", status_code=200 if model is not None else 503)

    async def version(request: Request) -> Response:
        return Response(__version__, media_type="text/plain")

    return Starlette(
        routes=[
            Route("/invocations", invocations, methods=["POST"]),
            Route("/ping", ping, methods=["GET"]),
            Route("/health", ping, methods=["GET"]),
            Route("/version", version, methods=["GET"]),
        ]
    )


def load_model(uri: str) -> scoring.Predictor:
    """The model at ``uri`` through ``gitml.models.pyfunc.load_model``."""
    # Imported by name: the models package loads the flavors only when asked,
    # and the server must start without them until a model names one.
    pyfunc = importlib.import_module("gitml.models.pyfunc")
    model: scoring.Predictor = pyfunc.load_model(uri)
    return model


def app_from_environment(
    loader: Callable[[str], Any] | None = None,
) -> Starlette:
    """An app whose model and settings come from the environment (one per uvicorn worker)."""
    uri = os.environ[ENV_MODEL_URI]
    return create_app(
        (loader or load_model)(uri),
        token=os.environ.get(ENV_TOKEN) or None,
        max_body_bytes=int(os.environ.get(ENV_MAX_BODY, scoring.DEFAULT_MAX_BODY_BYTES)),
    )
