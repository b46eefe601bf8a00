"""Artifact paths as a run's manifest holds them: relative, POSIX, inside the run's root."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from gitml.errors import InvalidInput

# Folders an artifact path may nest in: the tree of a commit is built one
# level per Python frame, and a download makes one folder per level.
MAX_DEPTH = 100

_RUNS_URI = re.compile(r"^runs:/([^/]+)/(.+)\Z")


def clean_path(path: str) -> str:
    """A relative POSIX path inside the run's artifact root, or ``InvalidInput``."""
    if not isinstance(path, str) or not path:
        raise InvalidInput(f"artifact path must be a non-empty string, got {path!r}")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(
            f"artifact path {path!r} is not valid Unicode text "
            "(a file name in another encoding?); rename the file"
        ) from None
    if "\\" in path or "\0" in path:
        raise InvalidInput(f"artifact path {path!r} must use '/' and hold no NUL or backslash")
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        raise InvalidInput(f"artifact path {path!r} is absolute; give a path relative to the run")
    parts = path.split("/")
    if ".." in parts:
        raise InvalidInput(f"artifact path {path!r} escapes the run's artifact root ('..')")
    normal = posixpath.normpath(path)
    if normal in (".", "") or normal.startswith("../"):
        raise InvalidInput(f"artifact path {path!r} does not name a file")
    parts = normal.split("/")
    if any(p in (".git", ".gitml") for p in parts):
        raise InvalidInput(f"artifact path {path!r} uses a reserved name")
    if len(parts) > MAX_DEPTH:
        raise InvalidInput(
            f"artifact path '{normal[:40]}...' is {len(parts)} levels deep; "
            f"the limit is {MAX_DEPTH}"
        )
    return normal


def stored_path(path: str) -> str:
    """A path as a manifest must hold it: what ``clean_path`` accepts, already normalised."""
    if clean_path(path) != path:
        raise InvalidInput(
            f"artifact path {path!r} is not normalised: no '.', '//' or trailing '/'"
        )
    return path


def inside(root: Path, relative: str | Path, what: str) -> Path:
    """``root / relative``, refused unless it stays inside ``root``.

    Symlinks that already exist below ``root`` are followed: writing or
    reading through one must not reach outside either.
    """
    target = root / relative
    if not target.resolve().is_relative_to(root.resolve()):
        raise InvalidInput(f"{what}: '{relative}' leads outside {root}")
    return target


def join(artifact_path: str | None, name: str) -> str:
    # Only a trailing "/" is dropped: "/etc" is absolute and must be refused, not re-rooted.
    return clean_path(f"{artifact_path.rstrip('/')}/{name}" if artifact_path else name)


def split_runs_uri(uri: str) -> tuple[str, str] | None:
    """``runs:/<run_id>/<path>``'s run (an id or a prefix of one) and its cleaned artifact
    path; None when ``uri`` has another form."""
    match = _RUNS_URI.match(uri)
    if match is None:
        return None
    return match.group(1), clean_path(match.group(2).rstrip("/"))
