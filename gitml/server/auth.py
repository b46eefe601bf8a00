"""Who may call a gitml server: bearer tokens from one token file, and loopback Host names.

Every server (``gitml server``, ``gitml ui``, ``gitml models serve``,
``gitml reconcile``) reads the same token file, ``TOKEN read|write`` per line,
through ``read_tokens``, and checks ``Authorization`` the same way, as
Starlette's ``AuthenticationMiddleware`` does: the ``BearerAuth`` middleware
puts the server's ``Access`` (its tokens) in the ASGI scope, and each route
that needs a token calls ``requires(scope, "read")`` or ``"write"``, which
raises ``Refused`` (401 without a known token, 403 for a read token on a
route that writes). Routes that call neither (probes, metrics) stay open and
cost no token comparison.
A server without tokens binds loopback only; ``LoopbackHostOnly`` also refuses
a request whose ``Host`` is not a loopback name, so a web page whose DNS name
is rebound to 127.0.0.1 cannot reach it from a browser.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gitml.errors import GitmlError, InvalidInput
from gitml.server.asgi import ASGIApp, Headers, Receive, Send, header, send_error
from gitml.server.asgi import Scope as ASGIScope

Scope = Literal["read", "write"]
Tokens = dict[str, Scope]
# The ASGI scope key BearerAuth fills, the one Starlette's AuthenticationMiddleware uses.
ACCESS = "auth"

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


@dataclass(frozen=True)
class Access:
    """Who may do what on one server."""

    tokens: Tokens | None  # None: no token is asked for, every request may write
    # Why no request may write here whatever its token (a read-only server), or None.
    writes_refused: str | None = None

    def scope_of(self, scope: ASGIScope) -> Scope | None:
        """What the request's token allows (None: no token, or an unknown one)."""
        if self.tokens is None:
            return "write"
        return token_scope(header(scope, b"authorization"), self.tokens)


class Refused(GitmlError):
    """A request its token does not allow: 401 without a known token, 403 otherwise."""

    def __init__(self, status: Literal[401, 403], message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = "UNAUTHENTICATED" if status == 401 else "PERMISSION_DENIED"
        # RFC 7235: a 401 names the scheme it wants.
        self.headers: Headers = ((b"www-authenticate", b"Bearer"),) if status == 401 else ()

    def send(self, send: Send) -> Awaitable[None]:
        """Answer the request with this refusal."""
        return send_error(send, self.status, self.error_code, self.message, self.headers)


def requires(scope: ASGIScope, need: Scope) -> None:
    """Raise ``Refused`` unless the server's ``Access`` lets the request do ``need`` (a
    write token may also read)."""
    access: Access = scope[ACCESS]
    if need == "write" and access.writes_refused is not None:
        raise Refused(403, access.writes_refused)
    given = access.scope_of(scope)
    if given is None:
        wanted = "a read or write token" if need == "read" else "a write token"
        raise Refused(401, f"send 'Authorization: Bearer <token>' with {wanted}")
    if need == "write" and given != "write":
        raise Refused(403, "this route needs a write token; this one may only read")


async def granted(scope: ASGIScope, send: Send, need: Scope) -> bool:
    """``requires`` for a plain ASGI route: False when the request was answered with its
    refusal."""
    try:
        requires(scope, need)
    except Refused as exc:
        await exc.send(send)
        return False
    return True


class BearerAuth:
    """Put the server's ``Access`` in each request's ASGI scope, for ``requires``.

    The token is compared only where a route requires one: a probe or a metrics
    scrape costs none.
    """

    def __init__(
        self, app: ASGIApp, tokens: Tokens | None, writes_refused: str | None = None
    ) -> None:
        self.app = app
        self.access = Access(tokens, writes_refused)

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        scope[ACCESS] = self.access
        await self.app(scope, receive, send)


class LoopbackHostOnly:
    """Answer 403 to a request whose ``Host`` is not a loopback name (no tokens: loopback only)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = header(scope, b"host")
            if not loopback_host(host):
                message = (
                    f"Host '{host}' is not a loopback name: without tokens this server "
                    "answers only 127.0.0.1, localhost and [::1]"
                )
                await send_error(send, 403, "PERMISSION_DENIED", message)
                return
        await self.app(scope, receive, send)
