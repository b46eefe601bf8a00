"""``RestClient``: a ``Client`` that must log to a ``gitml server``.

``gitml.Client("http://host:5000")`` is the same; this name refuses a URI that
is not ``http(s)://``. The transport, the journal and their errors live in
``gitml.tracking.http_backend``.
"""

from __future__ import annotations

import os

from gitml.errors import InvalidInput
from gitml.git.store import Clock
from gitml.tracking.client import Client
from gitml.tracking.client import NeedsRepository as NeedsRepository
from gitml.tracking.http_backend import AccessDenied as AccessDenied
from gitml.tracking.http_backend import HttpBackend
from gitml.tracking.http_backend import ServerUnavailable as ServerUnavailable
from gitml.tracking.http_backend import journal_root as journal_root


class RestClient(Client):
    """A ``Client`` over ``HttpBackend``: the tracking URI names a gitml server."""

    def __init__(self, tracking_uri: str | None = None, *, clock: Clock | None = None) -> None:
        uri = tracking_uri or os.environ.get("GITML_TRACKING_URI") or ""
        if not uri.startswith(("http://", "https://")):
            raise InvalidInput(f"RestClient needs an http(s):// tracking URI, got {uri!r}")
        super().__init__(backend=HttpBackend(uri, clock=clock))
