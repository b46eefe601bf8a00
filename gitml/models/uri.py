"""Model URIs: where a model is, as a local directory.

- a path (or ``file://`` path): the directory itself;
- ``runs:/<run_id>/<path>``: the run's artifacts below ``path``, downloaded
  (every file checked against the run's manifest sha256) into
  ``.git/gitml/models-cache/<key>``, where the key is a digest of the
  artifacts' paths and sha256s, so an unchanged model is fetched once;
- ``models:/<name>/<version>``, ``models:/<name>/latest`` or
  ``models:/<name>@<stage>``: the registered version's files, checked against
  the digest the registry recorded, then fetched as its ``runs:/`` URI is;
- any other scheme a caller registers with ``register_resolver``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gitml.errors import Corrupt, InvalidInput
from gitml.format.paths import split_runs_uri

if TYPE_CHECKING:
    from gitml.format.records import ModelVersion
    from gitml.registry.versions import Registry
    from gitml.tracking.client import Client

Resolver = Callable[[str], Path]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):(.*)\Z", re.DOTALL)
_resolvers: dict[str, Resolver] = {}


def register_resolver(scheme: str, func: Resolver) -> None:
    """Let ``resolve`` handle ``<scheme>:…`` URIs with ``func(uri) -> directory``."""
    _resolvers[scheme.lower()] = func


def resolve(uri: str | os.PathLike[str]) -> Path:
    """The local directory a model URI names; ``InvalidInput`` for a scheme nobody handles."""
    text = os.fspath(uri)
    if not text:
        raise InvalidInput("model URI is empty")
    match = _SCHEME.match(text)
    if match is None or len(match.group(1)) == 1:  # no scheme (or a Windows drive letter)
        return _local(text)
    scheme = match.group(1).lower()
    if scheme == "file":
        rest = match.group(2)
        return _local(rest[2:] if rest.startswith("//") else rest)
    resolver = _resolvers.get(scheme)
    if resolver is None:
        known = ", ".join(sorted(["file", *_resolvers]))
        raise InvalidInput(f"model URI {text!r}: unknown scheme '{scheme}:' (known: {known})")
    return resolver(text)


def _local(path: str) -> Path:
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise InvalidInput(f"model URI {path!r}: no such directory")
    return directory


def resolve_runs_uri(uri: str, client: Client | None = None) -> Path:
    """The run's model files, from ``client``'s repository (default: the fluent client's)."""
    from gitml.tracking import fluent

    parts = split_runs_uri(uri)
    if parts is None:
        raise InvalidInput(f"model URI {uri!r}: expected runs:/<run_id>/<path>")
    client = client or fluent.get_client()
    run_id, path = client.resolve_run_id(parts[0]), parts[1]
    listed = client.list_artifacts(run_id, path)
    if not listed:
        raise InvalidInput(f"model URI {uri!r}: run {run_id} has no artifacts at '{path}'")
    entries = sorted((a.path, a.sha256) for a in listed)
    key = hashlib.sha256(json.dumps([run_id, path, entries]).encode()).hexdigest()[:32]
    cache = client.store.data_dir / "models-cache"
    target = cache / key
    base = Path(path)
    if target.is_dir():
        try:
            _check(target, base, entries)
            return target
        except Corrupt:
            shutil.rmtree(target, ignore_errors=True)  # a damaged cache is fetched again
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache, prefix=".incoming-"))
    try:
        # download_artifacts checks every file against the manifest's sha256.
        fetched = client.download_artifacts(run_id, path, staging)
        if fetched.is_file():
            raise InvalidInput(f"model URI {uri!r}: '{path}' is a file, not a model directory")
        os.replace(fetched, target)
    except OSError:
        if not target.is_dir():  # another process won the race with the same content
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _check(directory: Path, base: Path, entries: list[tuple[str, str]]) -> None:
    for rel, sha in entries:
        file = directory / Path(rel).relative_to(base)
        if not file.is_file() or hashlib.sha256(file.read_bytes()).hexdigest() != sha:
            raise Corrupt(f"{file} does not match the run's manifest")


def version_folder(registry: Registry, version: ModelVersion) -> Path:
    """The verified local folder of a registered ``version``'s model files."""
    registry.check_digest(version)
    return resolve_runs_uri(f"runs:/{version.run_id}/{version.model_path}", registry.client)


def resolve_models_uri(uri: str) -> Path:
    """``models:/<name>/<version>``, ``/latest`` or ``@<stage>``: the version's run files."""
    from gitml.registry.versions import Registry
    from gitml.tracking import fluent

    registry = Registry(fluent.get_client())
    return version_folder(registry, registry.resolve(uri))


register_resolver("runs", resolve_runs_uri)
register_resolver("models", resolve_models_uri)
