"""One cap on request bodies for every gitml server.

``BodyCap`` refuses a body over its limit with 413 before the app reads it
when Content-Length declares it, and as it streams in otherwise (a chunked
body is counted as it arrives, so nothing unbounded is buffered). A limit may
depend on the request: the tracking server takes artifacts far larger than
any JSON body.

Only a body of undeclared length is counted. A declared one is as long as it
says: HTTP/1.1 servers read exactly Content-Length bytes, and HTTP/2 treats a
body of another length as a malformed request (RFC 9113, 8.1.1). An HTTP/1
request with neither Content-Length nor Transfer-Encoding has no body (RFC
9112, 6.3). So a probe or a one-row scoring request passes with one scan of
its headers, not through two wrapped callables.
"""

from __future__ import annotations

from collections.abc import Callable

from gitml.errors import GitmlError
from gitml.server.asgi import ASGIApp, Message, Receive, Scope, Send, send_error

LIMIT_EXCEEDED = "REQUEST_LIMIT_EXCEEDED"


class BodyTooLarge(GitmlError):
    """Raised by the request's ``receive`` once the body passes its limit."""


class BodyCap:
    """Answer 413 to a request body over ``limit`` bytes (a number, or one per request),
    and 400 to a Content-Length that is not a number."""

    def __init__(self, app: ASGIApp, limit: int | Callable[[Scope], int]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit if isinstance(self.limit, int) else self.limit(scope)
        declared: str | None = None
        chunked = False
        # ASGI servers give header names in lower case (Starlette reads them so too).
        for name, value in scope["headers"]:
            if name == b"content-length" and declared is None:
                declared = value.decode("latin-1")
            elif name == b"transfer-encoding":
                chunked = True
        if declared is not None and not chunked:
            if not declared.isdigit():
                message = f"Content-Length '{declared}' is not a number"
                await send_error(send, 400, "BAD_REQUEST", message)
                return
            if int(declared) > limit:
                message = f"request body of {declared} bytes is over the limit of {limit} bytes"
                await send_error(send, 413, LIMIT_EXCEEDED, message)
                return
            await self.app(scope, receive, send)
            return
        if not chunked and scope.get("http_version", "1.1").startswith("1"):
            await self.app(scope, receive, send)  # no body at all
            return
        refusal = f"request body over the limit of {limit} bytes"
        received = 0
        over = False
        started = False

        async def counted() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise BodyTooLarge(refusal)
            return message

        async def answer(message: Message) -> None:
            # Whatever the app makes of the aborted read (FastAPI turns it into a
            # 400 about parsing), the client is told the body was too large.
            nonlocal started
            if over:
                if not started:
                    started = True
                    await send_error(send, 413, LIMIT_EXCEEDED, refusal)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, answer)
        except BodyTooLarge:
            if not started:
                await send_error(send, 413, LIMIT_EXCEEDED, refusal)
