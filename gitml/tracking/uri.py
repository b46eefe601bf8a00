"""Where a tracking URI points: a repository on disk, or a gitml server.

Kept apart from the Client so that commands which only read a store (``gitml
stage show``) find it without importing the record models.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gitml.errors import InvalidInput, NotARepository
from gitml.git.store import Clock, Store


def resolve_store(
    tracking_uri: str | None, *, clock: Clock | None = None, identity: str | None = None
) -> tuple[Store, Store | None]:
    """(where records go, the repository the code runs in — None outside one)."""
    kwargs: dict[str, Any] = {"identity": identity}
    if clock is not None:
        kwargs["clock"] = clock
    try:
        work: Store | None = Store.discover(Path.cwd(), **kwargs)
    except NotARepository:
        work = None
    uri = tracking_uri or os.environ.get("GITML_TRACKING_URI") or None
    if uri is None:
        if work is None:
            raise NotARepository(
                f"{Path.cwd()} is not inside a Git repository, so runs have nowhere to go: "
                "run 'git init' (or 'gitml init') here, or set GITML_TRACKING_URI to a repository"
            )
        return work, work
    if is_remote(uri):
        raise InvalidInput(
            f"tracking URI {uri!r} names a gitml server, which has no local repository: "
            "use gitml.Client(uri), which talks to it over HTTP"
        )
    path = Path(uri[len("file://") :] if uri.startswith("file://") else uri).expanduser()
    if not path.exists():
        raise NotARepository(
            f"tracking URI {uri!r}: {path} does not exist; create it with 'git init --bare {path}'"
        )
    tracking = Store(path.resolve(), **kwargs)
    if work is not None and work.gitdir == tracking.gitdir:
        return work, work
    return tracking, work


def is_remote(uri: str | None) -> bool:
    """Whether a tracking URI names a gitml server (``gitml server``) rather than a repository."""
    return uri is not None and uri.startswith(("http://", "https://"))
