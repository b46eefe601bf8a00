"""Getting a project: a local folder as it is, or a Git URL at a version.

A Git URL (``https://…``, ``ssh://…``, ``git@host:path``, ``file://…``, or a
local repository with ``--version``) is cloned once, bare, into
``~/.cache/gitml/repos/<hash of the URL>`` and fetched again on later runs;
each run then gets its own checkout of the exact commit (a local clone, so
objects are hard links), removed when the run ends. ``URI#sub/dir`` runs the
project in that subdirectory, as in MLflow.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from gitml.errors import InvalidInput, NotFound
from gitml.git import command
from gitml.git.command import GitFailed
from gitml.projects.environments import _locked, cache_root

_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")


@dataclass(frozen=True)
class FetchedProject:
    directory: Path  # the project folder (the subdirectory, when one was given)
    checkout: Path | None  # a temporary checkout to remove after the run
    url: str | None  # the repository URL of a Git project
    commit: str | None  # the commit checked out, for a Git URL
    subdirectory: str  # '' for the root
    version: str | None

    def cleanup(self) -> None:
        if self.checkout is not None:
            shutil.rmtree(self.checkout, ignore_errors=True)


def split_subdirectory(uri: str) -> tuple[str, str]:
    """``"https://h/r.git#a/b"`` -> ``("https://h/r.git", "a/b")``."""
    base, _, sub = uri.partition("#")
    sub = sub.strip("/")
    if sub:
        parts = PurePosixPath(sub).parts
        if sub.startswith("/") or ".." in parts:
            raise InvalidInput(f"project subdirectory {sub!r} must be a relative path inside it")
    return base, sub


def is_git_url(uri: str) -> bool:
    if _SCP_LIKE.match(uri):
        return True
    scheme = urllib.parse.urlparse(uri).scheme
    return scheme in ("http", "https", "ssh", "git", "git+ssh", "git+https", "file")


def _git(*args: str, cwd: Path | None = None) -> str:
    try:
        return command.run(args, cwd=cwd).stdout.strip()
    except GitFailed as exc:
        raise NotFound(str(exc)) from None


def fetch(uri: str, version: str | None = None) -> FetchedProject:
    base, sub = split_subdirectory(uri)
    local = Path(base).expanduser()
    if not is_git_url(base) or (base.startswith("file://") and _plain_folder(base)):
        if base.startswith("file://"):
            local = Path(urllib.parse.unquote(urllib.parse.urlparse(base).path))
        if not local.is_dir():
            raise NotFound(
                f"project {base!r} is neither a folder nor a Git URL (https://…, ssh://…, file://…)"
            )
        if version is None:
            directory = (local / sub).resolve()
            if not directory.is_dir():
                raise NotFound(f"project subdirectory {sub!r} does not exist in {local.resolve()}")
            return FetchedProject(directory, None, None, None, sub, None)
        # A local folder at a version: the Git repository around it, at that version.
        try:
            root = Path(_git("rev-parse", "--show-toplevel", cwd=local))
        except NotFound:
            raise InvalidInput(
                f"--version needs a Git project, but {local.resolve()} is not in a Git repository"
            ) from None
        inner = local.resolve().relative_to(root.resolve()).as_posix()
        sub = "/".join(p for p in (inner if inner != "." else "", sub) if p)
        base = str(root)
    return _fetch_git(base, sub, version)


def _plain_folder(uri: str) -> bool:
    """A ``file://`` URL naming a folder that is not a Git repository runs as a folder."""
    path = Path(urllib.parse.unquote(urllib.parse.urlparse(uri).path))
    if not path.is_dir():
        return False
    return not (
        (path / ".git").exists() or ((path / "HEAD").is_file() and (path / "objects").is_dir())
    )


def _fetch_git(url: str, sub: str, version: str | None) -> FetchedProject:
    cache = cache_root() / "repos" / hashlib.sha256(url.encode()).hexdigest()[:20]
    with _locked(cache.with_name(cache.name + ".lock")):
        if not cache.is_dir():
            temporary = cache.with_name(f"{cache.name}.{uuid.uuid4().hex[:8]}")
            try:
                _git("clone", "--bare", "--quiet", url, str(temporary))
            except NotFound as exc:
                shutil.rmtree(temporary, ignore_errors=True)
                raise NotFound(f"cannot clone {url}: {exc}") from None
            os.replace(temporary, cache)
        else:
            _git(
                "fetch",
                "--quiet",
                "--prune",
                "--force",
                url,
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
                cwd=cache,
            )
        commit = _resolve(cache, url, version)
    checkout = Path(tempfile.mkdtemp(prefix="gitml-project-"))
    try:
        _git("clone", "--quiet", "--no-checkout", str(cache), str(checkout / "code"))
        _git("checkout", "--quiet", "--detach", commit, cwd=checkout / "code")
        _git("remote", "set-url", "origin", url, cwd=checkout / "code")
    except BaseException:
        shutil.rmtree(checkout, ignore_errors=True)
        raise
    directory = checkout / "code" / sub
    if not directory.is_dir():
        shutil.rmtree(checkout, ignore_errors=True)
        raise NotFound(f"project subdirectory {sub!r} does not exist in {url} at {commit[:12]}")
    return FetchedProject(directory, checkout, url, commit, sub, version)


def _resolve(cache: Path, url: str, version: str | None) -> str:
    wanted = version or "HEAD"
    try:
        return _git("rev-parse", "--verify", "--quiet", f"{wanted}^{{commit}}", cwd=cache)
    except NotFound:
        pass
    if version is not None and re.fullmatch(r"[0-9a-f]{7,40}", version):
        # A commit no branch or tag reaches any more: servers may still serve it.
        try:
            _git("fetch", "--quiet", url, version, cwd=cache)
            return _git("rev-parse", "--verify", "--quiet", f"{version}^{{commit}}", cwd=cache)
        except NotFound:
            pass
    if version is None:
        raise NotFound(f"{url} has no commits (its HEAD names no branch)")
    raise NotFound(f"version {version!r} is not a branch, tag or commit of {url}")


def repository_of(directory: Path) -> tuple[str | None, str | None]:
    """(remote URL, HEAD commit) of the Git repository around ``directory``, if any."""
    try:
        commit = _git("rev-parse", "HEAD", cwd=directory)
    except NotFound:
        return None, None
    try:
        url: str | None = _git("remote", "get-url", "origin", cwd=directory)
    except NotFound:
        url = None
    return url, commit
