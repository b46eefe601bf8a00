"""Artifact stores: where artifacts above ``artifact_threshold`` live.

``artifact_store`` in ``.gitml.yaml`` names the store:

- a folder, absolute or relative to the repository root (default
  ``.git/gitml/artifacts``): ``tracking.artifacts.ExternalStore``, one file
  per content at ``ab/cdef…`` (the sha256 split after two characters);
- a bucket, one object per content at ``prefix/ab/cdef…`` (the folder's
  layout, so a sync of a folder store seeds a bucket and back):
  ``s3://bucket/prefix`` (``s3``), ``gs://bucket/prefix`` (``gcs``),
  ``az://``, ``wasbs://`` or ``abfss://`` (``azure``). Each provider's SDK is
  an extra (``gitml[s3]``, ``gitml[gcs]``, ``gitml[azure]``), imported on
  first use.

A bucket is read and written through this machine's folder cache,
``.git/gitml/artifacts`` (``CachedStore``): logging copies the file there
(checking its digest) and uploads that copy before the manifest that names it
is committed, so no run commit names an object the bucket lacks; reads
download into the cache once. ``gitml push`` uploads from the cache what the
bucket lacks, ``gitml pull`` fills the cache (``SharedStore``).

Every backend checks the sha256 of what it stores and of what it hands out:
a mismatch is ``Corrupt`` and leaves neither an object nor a partial file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from gitml.artifacts.base import WORKERS, ArtifactStore, ArtifactStoreUnavailable, BucketStore
from gitml.artifacts.folder import ExternalStore
from gitml.errors import GitmlError, InvalidInput
from gitml.format.records import Config

__all__ = [
    "ArtifactStore",
    "ArtifactStoreUnavailable",
    "BucketStore",
    "CachedStore",
    "SharedStore",
    "bucket_store",
    "cache_store",
    "configured_store",
    "open_store",
    "shared_store",
]

_SCHEME = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")


def _s3(url: str, endpoint_url: str | None, **options: int) -> BucketStore:
    from gitml.artifacts.s3 import S3Store

    return S3Store(url, endpoint_url=endpoint_url, **options)


def _gcs(url: str, endpoint_url: str | None, **options: int) -> BucketStore:
    from gitml.artifacts.gcs import GCSStore

    return GCSStore(url, endpoint_url=endpoint_url, **options)


def _azure(url: str, endpoint_url: str | None, **options: int) -> BucketStore:
    from gitml.artifacts.azure import AzureBlobStore

    return AzureBlobStore(url, endpoint_url=endpoint_url, **options)


# One entry a URL scheme: a new backend is one module and one line here.
BACKENDS: dict[str, Callable[..., BucketStore]] = {
    "s3": _s3,
    "gs": _gcs,
    "az": _azure,
    "wasb": _azure,
    "wasbs": _azure,
    "abfs": _azure,
    "abfss": _azure,
}


def bucket_store(value: str, endpoint_url: str | None = None, **options: int) -> BucketStore | None:
    """The bucket store a URL names, None for a folder, ``InvalidInput`` for anything else
    (``options``: ``part_size``, ``workers``, else each provider's own defaults)."""
    match = _SCHEME.match(value)
    if match is None:
        return None
    make = BACKENDS.get(match["scheme"].lower())
    if make is None:
        raise InvalidInput(
            f"artifact_store {value!r}: gitml stores artifacts in a folder or at "
            "s3://bucket/prefix, gs://bucket/prefix, az://container/prefix, "
            "wasbs://container@account.blob.core.windows.net/prefix or "
            "abfss://container@account.dfs.core.windows.net/prefix"
        )
    return make(value, endpoint_url, **options)


def cache_store(data_dir: Path) -> ExternalStore:
    """This machine's folder of artifacts, ``.git/gitml/artifacts``."""
    return ExternalStore(data_dir / "artifacts")


def configured_store(config: Config, settings_root: Path, data_dir: Path) -> ArtifactStore:
    """The store ``artifact_store`` names, by itself (no cache in front of a bucket)."""
    value = config.artifact_store
    if not value:
        return cache_store(data_dir)
    bucket = bucket_store(value, config.artifact_endpoint_url)
    return bucket if bucket is not None else ExternalStore(settings_root / value)


def open_store(config: Config, settings_root: Path, data_dir: Path) -> ArtifactStore:
    """The store a ``Client`` writes large artifacts to and reads them from."""
    store = configured_store(config, settings_root, data_dir)
    return store if store.local else CachedStore(cache_store(data_dir), store)


# -- a remote store behind the local cache ----------------------------------------------------


class CachedStore:
    """A remote store read through this machine's folder cache and written through it.

    Writes land in the cache first (a checked, immutable copy), then that copy
    is uploaded: the caller commits the manifest only after both succeeded.
    """

    local = False

    def __init__(self, cache: ExternalStore, remote: ArtifactStore) -> None:
        self.cache = cache
        self.remote = remote

    @property
    def location(self) -> str:
        return self.remote.location

    def put(self, source: Path, sha256: str) -> None:
        self.cache.put(source, sha256)
        self.remote.put(self.cache.path(sha256), sha256)

    def put_bytes(self, data: bytes, sha256: str) -> None:
        self.cache.put_bytes(data, sha256)
        self.remote.put(self.cache.path(sha256), sha256)

    def _fetch(self, sha256: str, what: str) -> None:
        if not self.cache.has(sha256):
            self.remote.copy_to(sha256, self.cache.path(sha256), what)

    def copy_to(self, sha256: str, dest: Path, what: str) -> None:
        self._fetch(sha256, what)
        self.cache.copy_to(sha256, dest, what)

    def read(self, sha256: str, what: str) -> bytes:
        self._fetch(sha256, what)
        return self.cache.read(sha256, what)

    def has(self, sha256: str) -> bool:
        return self.remote.has(sha256)

    def missing(self, shas: Iterable[str]) -> set[str]:
        return self.remote.missing(shas)

    def close(self) -> None:
        self.remote.close()


# -- sharing -------------------------------------------------------------------------------------


@dataclass
class SharedStore:
    """The store records are published with, and this machine's cache of large artifacts.

    ``gitml push`` checks that ``store`` holds what the pushed records name and
    uploads from ``cache`` what it lacks; ``gitml pull`` downloads into
    ``cache`` what pulled records name (only for a bucket: a folder store is
    read in place). ``cache`` is None when the store is the cache itself (no
    ``artifact_store`` configured). Called with a sha256 it answers whether
    the store holds it (``sharing.Holds``).
    """

    store: ArtifactStore
    cache: ExternalStore | None

    def __call__(self, sha256: str) -> bool:
        return self.store.has(sha256)

    @property
    def workers(self) -> int:
        """Transfers in flight: as many as the bucket's client keeps connections."""
        return self.store.workers if isinstance(self.store, BucketStore) else WORKERS

    def missing(self, shas: Iterable[str]) -> set[str]:
        return self.store.missing(shas)

    def cached(self, shas: Iterable[str]) -> set[str]:
        """Those of ``shas`` that the cache holds (and ``upload`` can publish)."""
        wanted = set(shas)
        return wanted - self.cache.missing(wanted) if self.cache is not None else set()

    def upload(self, shas: Iterable[str]) -> list[str]:
        """Publish cached content to the store (each checked on the way); what was sent."""
        wanted = sorted(set(shas))
        if not wanted:
            return []
        cache = self.cache
        assert cache is not None, "only cached content can be uploaded"
        # What is uploaded was found missing in one batch just before (push's plan).
        send = self.store.put_absent if isinstance(self.store, BucketStore) else self.store.put
        with ThreadPoolExecutor(max_workers=min(self.workers, len(wanted))) as pool:
            list(pool.map(lambda sha: send(cache.path(sha), sha), wanted))
        return wanted

    def download(self, wanted: Mapping[str, str]) -> tuple[list[str], dict[str, GitmlError]]:
        """Fetch into the cache the content it lacks (sha256 -> what it is, for messages),
        several at once.

        Returns what was downloaded, and why each failure failed; only for a
        bucket (a folder store is read in place, nothing to download).
        """
        if self.store.local or self.cache is None:
            return [], {}
        cache = self.cache
        need = sorted(cache.missing(wanted))

        def fetch(sha: str) -> GitmlError | None:
            try:
                self.store.copy_to(sha, cache.path(sha), wanted[sha])
            except GitmlError as exc:
                return exc
            return None

        with ThreadPoolExecutor(max_workers=max(1, min(self.workers, len(need)))) as pool:
            outcomes = list(pool.map(fetch, need))
        failed = {sha: exc for sha, exc in zip(need, outcomes, strict=True) if exc is not None}
        return [sha for sha in need if sha not in failed], failed


def shared_store(config: Config, settings_root: Path, data_dir: Path) -> SharedStore:
    store = configured_store(config, settings_root, data_dir)
    cache = cache_store(data_dir)
    same = isinstance(store, ExternalStore) and store.root.resolve() == cache.root.resolve()
    return SharedStore(store, None if same else cache)
