"""The three gitml servers over one token file and one body cap, each on a real uvicorn."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import httpx2

import gitml
from gitml.registry.stages import Stages
from gitml.registry.versions import Registry
from gitml.server.auth import Tokens
from gitml.server.tracking_app import PREFIX, ServerSettings, create_app
from gitml.serving import reconcile_app, scoring_app
from gitml.serving.reconcile import Reconciler, Source

from .reconcile import CountingLoader, VersionNumber
from .serving import uvicorn_server

INPUTS = b'{"inputs": [[1.0, 2.0]]}'


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: bytes | None = None


@dataclass(frozen=True)
class Served:
    """One running server, a route of it that reads and one that writes (if any)."""

    name: str
    url: str
    read: Call
    write: Call | None

    def call(
        self,
        http: httpx2.Client,
        call: Call,
        token: str | None,
        body: bytes | Iterable[bytes] | None = None,
    ) -> httpx2.Response:
        """``call`` with ``token`` as a bearer token (None: no Authorization), and ``body``
        in place of the call's own when given."""
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        content = call.body if body is None else body
        return http.request(call.method, self.url + call.path, content=content, headers=headers)


@contextmanager
def every_server(
    client: gitml.Client, tokens: Tokens, max_body_bytes: int = 1_000_000
) -> Iterator[list[Served]]:
    """``gitml server``'s, ``gitml models serve``'s and ``gitml reconcile``'s apps over
    ``client``'s repository (which has a model ``adder``), all with ``tokens`` and
    ``max_body_bytes``."""
    Stages(Registry(client), client.config).assign("adder", 1, "production")
    reconciler = Reconciler(
        Source(client.store), "production", client.config, loader=CountingLoader()
    )
    reconciler.reconcile()
    settings = ServerSettings(repo=client.store.root, tokens=tokens, max_body_bytes=max_body_bytes)
    scoring = scoring_app.create_app(VersionNumber(1), tokens=tokens, max_body_bytes=max_body_bytes)
    reconciling = reconcile_app.create_app(
        reconciler, interval=60, tokens=tokens, max_body_bytes=max_body_bytes, run_loop=False
    )
    invocations = Call("POST", "/invocations", INPUTS)
    with ExitStack() as stack:
        yield [
            Served(
                "tracking",
                stack.enter_context(uvicorn_server(create_app(settings))),
                Call("POST", f"{PREFIX}/runs/search", b"{}"),
                Call("POST", f"{PREFIX}/experiments", b'{"name": "by-token"}'),
            ),
            Served("scoring", stack.enter_context(uvicorn_server(scoring)), invocations, None),
            Served(
                "reconcile",
                stack.enter_context(uvicorn_server(reconciling)),
                invocations,
                Call("POST", "/hooks/git"),
            ),
        ]
