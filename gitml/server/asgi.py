"""Plain ASGI pieces every gitml server shares: the types, one header, one answer.

Plain ASGI, not Starlette: ``gitml models serve`` does without Starlette (and
anyio) to start sooner, and the shared middleware runs in front of it too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = tuple[tuple[bytes, bytes], ...]

JSON = "application/json"


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of request header ``name`` (lower case), as Starlette reads it."""
    for key, value in scope["headers"]:
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


async def respond(
    send: Send,
    body: bytes,
    status: int = 200,
    media_type: str | None = JSON,
    headers: Headers = (),
) -> None:
    raw = [(b"content-length", str(len(body)).encode())]
    if media_type is not None:
        raw.append((b"content-type", media_type.encode()))
    raw.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def error_body(code: str, message: str) -> bytes:
    """What every gitml server answers an error with: ``{"error_code", "message"}``."""
    return orjson.dumps({"error_code": code, "message": message})


async def send_error(
    send: Send, status: int, code: str, message: str, headers: Headers = ()
) -> None:
    await respond(send, error_body(code, message), status, JSON, headers)
