"""What a route of the tracking app or the UI API gets from its app.

The app keeps its repository's ``Client`` and ``Registry`` in ``app.state``;
routes are module-level functions that name them as parameters
(``client: AppClient``), and name ``Read`` or ``Write`` among their
dependencies for the token check of ``gitml.server.auth``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gitml.registry.versions import Registry
from gitml.server import auth
from gitml.tracking.client import Client


async def _client(request: Request) -> Client:
    client: Client = request.app.state.client
    return client


async def _registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


# Checked on the event loop (async): a sync dependency would cost a thread switch a request.
async def _reader(request: Request) -> None:
    auth.requires(request.scope, "read")


async def _writer(request: Request) -> None:
    auth.requires(request.scope, "write")


AppClient = Annotated[Client, Depends(_client)]
AppRegistry = Annotated[Registry, Depends(_registry)]
Read = Depends(_reader)
Write = Depends(_writer)
