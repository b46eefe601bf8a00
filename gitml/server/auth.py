"""Who may call a gitml server: bearer tokens from one token file, and loopback Host names.

Every server (``gitml server``, ``gitml ui``, ``gitml models serve``,
``gitml reconcile``) reads the same token file, ``TOKEN read|write`` per line,
through ``read_tokens``, and checks ``Authorization`` through ``token_scope``.
A server without tokens binds loopback only; ``LoopbackHostOnly`` also refuses
a request whose ``Host`` is not a loopback name, so a web page whose DNS name
is rebound to 127.0.0.1 cannot reach it from a browser.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any, Literal

import orjson

from gitml.errors import InvalidInput

Scope = Literal["read", "write"]
Tokens = dict[str, Scope]
ASGIScope = MutableMapping[str, Any]
ASGIApp = Callable[
    [ASGIScope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def read_tokens(path: Path) -> Tokens:
    """A token file: one ``TOKEN read`` or ``TOKEN write`` per line; ``#`` starts a comment.

    Refused whole, naming the file and line, when a line is anything else: a
    file of one bare token would otherwise be accepted and then refuse every
    request.
    """
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot read the token file: {exc}") from None
    tokens: Tokens = {}
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2 or words[1] not in ("read", "write"):
            raise InvalidInput(
                f"{path}:{number}: expected 'TOKEN read' or 'TOKEN write' "
                "(one token and its scope a line)"
            )
        token, scope = words
        if not (token.isascii() and token.isprintable()):
            raise InvalidInput(f"{path}:{number}: a token is printable ASCII")
        if token in tokens:
            raise InvalidInput(f"{path}:{number}: this token is listed already")
        tokens[token] = "read" if scope == "read" else "write"
    if not tokens:
        raise InvalidInput(f"{path} holds no token")
    return tokens


def bearer(authorization: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>``; the scheme's case does not matter
    (RFC 7235)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def token_scope(authorization: str | None, tokens: Tokens) -> Scope | None:
    """The scope of the request's bearer token, or None when it is none of ``tokens``.

    Each token is compared in constant time, and every one is compared, so the
    time taken says nothing about which token nearly matched.
    """
    given = (bearer(authorization) or "").encode()
    found: Scope | None = None
    for token, scope in tokens.items():
        if hmac.compare_digest(given, token.encode()):
            found = scope
    return found


def loopback_host(host: str | None) -> bool:
    """``Host`` names this machine's loopback (any port), or is absent (HTTP/1.0)."""
    if host is None:
        return True
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name
    else:
        name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
    return name in LOOPBACK_NAMES


class LoopbackHostOnly:
    """Answer 403 to a request whose ``Host`` is not a loopback name (no tokens: loopback only)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self,
        scope: ASGIScope,
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] == "http":
            host = next(
                (v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"host"), None
            )
            if not loopback_host(host):
                body = orjson.dumps(
                    {
                        "error_code": "PERMISSION_DENIED",
                        "message": (
                            f"Host '{host}' is not a loopback name: without tokens this server "
                            "answers only 127.0.0.1, localhost and [::1]"
                        ),
                    }
                )
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ]
                await send({"type": "http.response.start", "status": 403, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
