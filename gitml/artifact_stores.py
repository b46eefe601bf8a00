"""Artifact store backends: where artifacts above ``artifact_threshold`` live.

``artifact_store`` in ``.gitml.yaml`` names the store (issue 8):

- a folder, absolute or relative to the repository root (default
  ``.git/gitml/artifacts``): ``tracking.artifacts.ExternalStore``, one file
  per content at ``ab/cdef…`` (the sha256 split after two characters);
- ``s3://bucket/prefix``: an S3-compatible bucket (AWS, MinIO, Ceph, R2, …),
  ``S3Store``, one object per content at ``prefix/ab/cdef…``: the folder's
  layout, so ``aws s3 sync`` of a folder store seeds a bucket and back. The
  endpoint is ``artifact_endpoint_url`` of ``.gitml.yaml``, else
  ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``, else AWS; credentials and
  region come the AWS way (``AWS_ACCESS_KEY_ID``…, profiles, instance roles).
  boto3 is the extra ``gitml[s3]`` and is imported on first use.

A bucket is read and written through this machine's folder cache,
``.git/gitml/artifacts`` (``CachedStore``): logging copies the file there
(checking its digest) and uploads that copy before the manifest that names it
is committed, so no run commit names an object the bucket lacks; reads
download into the cache once. ``gitml push`` uploads from the cache what the
bucket lacks, ``gitml pull`` fills the cache (``SharedStore``).

Every backend checks the sha256 of what it stores and of what it hands out:
a mismatch is ``Corrupt`` and leaves neither an object nor a partial file.

The setting stays ``artifact_store`` (the issue wrote ``artifacts:``), with
no alias: one name per setting, no rule for a file that gives both, and the
key had shipped already (``gitml init --artifact-store``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from .errors import Corrupt, GitmlError, InvalidInput, NotFound
from .records import Config
from .tracking.artifacts import ExternalStore, verify

# boto3's default part size; S3 wants at least 5 MiB for every part but the last.
PART_SIZE = 8 * 1024 * 1024
MIN_PART_SIZE = 5 * 1024 * 1024
# HEAD requests in flight for ``missing``, and parts in flight for one transfer.
WORKERS = 16

_S3_URL = re.compile(r"s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<prefix>.*))?\Z")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_NOT_THERE = ("404", "NoSuchKey", "NotFound")


_session: Any = None
_session_lock = threading.Lock()


def _forget_session_in_child() -> None:
    # Another thread may hold the lock at fork: the child starts afresh.
    global _session, _session_lock
    _session, _session_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_session_in_child)


class ArtifactStoreUnavailable(GitmlError):
    """The artifact store could not be reached or refused a request (credentials, bucket)."""


class ArtifactStore(Protocol):
    """What the client and ``gitml push``/``pull`` need of a store of content by sha256."""

    @property
    def local(self) -> bool:
        """Whether reads are local (a folder) rather than downloads."""

    @property
    def location(self) -> str:
        """The store as a user names it: a folder or ``s3://bucket/prefix``."""

    def put(self, source: Path, sha256: str) -> None:
        """Store ``source`` as ``sha256`` unless held; ``Corrupt`` if its content is not that."""

    def put_bytes(self, data: bytes, sha256: str) -> None: ...

    def copy_to(self, sha256: str, dest: Path, what: str) -> None:
        """Write the content to ``dest``, checked; ``NotFound`` or ``Corrupt`` leave no file."""

    def read(self, sha256: str, what: str) -> bytes: ...

    def has(self, sha256: str) -> bool: ...

    def missing(self, shas: Iterable[str]) -> set[str]:
        """The digests among ``shas`` that the store does not hold (one batch)."""

    def close(self) -> None: ...


def s3_location(value: str) -> tuple[str, str] | None:
    """``(bucket, prefix)`` of an ``s3://`` value, None for a folder, else ``InvalidInput``."""
    if not _SCHEME.match(value):
        return None
    match = _S3_URL.match(value)
    if match is None:
        if value.startswith("s3://"):
            raise InvalidInput(
                f"artifact_store {value!r}: not a bucket name; use s3://bucket/prefix "
                "(3 to 63 characters: lowercase letters, digits, '.' and '-')"
            )
        raise InvalidInput(
            f"artifact_store {value!r}: gitml stores artifacts in a folder or at s3://bucket/prefix"
        )
    return match["bucket"], (match["prefix"] or "").strip("/")


def cache_store(data_dir: Path) -> ExternalStore:
    """This machine's folder of artifacts, ``.git/gitml/artifacts``."""
    return ExternalStore(data_dir / "artifacts")


def configured_store(config: Config, settings_root: Path, data_dir: Path) -> ArtifactStore:
    """The store ``artifact_store`` names, by itself (no cache in front of a bucket)."""
    value = config.artifact_store
    if not value:
        return cache_store(data_dir)
    if s3_location(value) is not None:
        return S3Store(value, endpoint_url=config.artifact_endpoint_url)
    return ExternalStore(settings_root / value)


def open_store(config: Config, settings_root: Path, data_dir: Path) -> ArtifactStore:
    """The store a ``Client`` writes large artifacts to and reads them from."""
    store = configured_store(config, settings_root, data_dir)
    return store if store.local else CachedStore(cache_store(data_dir), store)


# -- S3 -------------------------------------------------------------------------------------


class _HashingReader:
    """A non-seekable reader that hashes what boto3 uploads and refuses a wrong digest at EOF.

    Non-seekable on purpose: s3transfer then reads the stream exactly once, in
    order (part after part), and raising here before the last part is handed
    over means the object is never completed under a name it does not match.
    """

    def __init__(self, stream: BinaryIO, sha256: str, what: str) -> None:
        self._stream = stream
        self._hash = hashlib.sha256()
        self._sha256 = sha256
        self._what = what
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._hash.update(data)
        self.size += len(data)
        if size is None or size < 0 or len(data) < size:  # end of the stream
            self.check()
        return data

    def check(self) -> None:
        actual = self._hash.hexdigest()
        if actual != self._sha256:
            raise Corrupt(
                f"{self._what}: content has sha256 {actual} now, not {self._sha256}; "
                "did it change while it was being logged?"
            )


class _HashingWriter:
    """A non-seekable writer: s3transfer writes ranged downloads to it in order."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        return self._out.write(data)


class S3Store:
    """Content in an S3-compatible bucket, one object per sha256 at ``prefix/ab/cdef…``."""

    local = False

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        part_size: int = PART_SIZE,
        workers: int = WORKERS,
    ) -> None:
        where = s3_location(url)
        if where is None:
            raise InvalidInput(f"{url!r} is not an s3:// URL")
        self.bucket, self.prefix = where
        self.endpoint_url = (
            endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
            or None
        )
        if part_size < MIN_PART_SIZE:
            raise InvalidInput(f"part_size {part_size}: S3 parts are at least {MIN_PART_SIZE}")
        self.part_size = part_size
        self.workers = workers
        self._lock = threading.Lock()
        self._s3: Any = None
        self._transfer: Any = None
        self._pid = os.getpid()

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key(self, sha256: str) -> str:
        name = f"{sha256[:2]}/{sha256[2:]}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def client(self) -> Any:
        """The boto3 client, made on first use (``gitml runs list`` never imports boto3)."""
        with self._lock:
            # A forked child (DataLoader workers) must not share the parent's connections.
            if self._s3 is None or self._pid != os.getpid():
                self._pid = os.getpid()
                try:
                    import boto3.session
                    from boto3.s3.transfer import TransferConfig
                    from botocore.config import Config as BotoConfig
                except ImportError:
                    raise ArtifactStoreUnavailable(
                        f"artifact store {self.location} needs boto3: pip install 'gitml[s3]'"
                    ) from None
                global _session
                # One session per process, so botocore reads its S3 model once; not
                # boto3's default one, and clients are made under a lock: sessions
                # are not thread-safe (clients are).
                with _session_lock:
                    _session = _session or boto3.session.Session()
                    self._s3 = _session.client(
                        "s3",
                        endpoint_url=self.endpoint_url,
                        config=BotoConfig(max_pool_connections=max(10, self.workers)),
                    )
                # Files above one part go up (and down) in parts, in parallel.
                self._transfer = TransferConfig(
                    multipart_threshold=self.part_size,
                    multipart_chunksize=self.part_size,
                    max_concurrency=self.workers,
                )
            return self._s3

    @contextlib.contextmanager
    def _errors(self, doing: str, *, absent: str | None = None) -> Iterator[None]:
        """botocore's errors as gitml's: ``NotFound(absent)`` for a missing object, else a line."""
        self.client()
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code in _NOT_THERE and absent is not None:
                raise NotFound(absent) from None
            reason = error.get("Message") or code
            if code == "NoSuchBucket":
                reason = f"bucket '{self.bucket}' does not exist"
            raise ArtifactStoreUnavailable(
                f"artifact store {self.location}: {doing}: {reason}"
            ) from None
        except BotoCoreError as exc:
            hint = ""
            if type(exc).__name__ == "NoCredentialsError":
                hint = " (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
            raise ArtifactStoreUnavailable(
                f"artifact store {self.location}: {doing}: {exc}{hint}"
            ) from None

    def _absent(self, sha256: str, what: str) -> str:
        return f"{what}: content {sha256} is missing from the artifact store {self.location}"

    def has(self, sha256: str) -> bool:
        try:
            with self._errors(f"looking up {sha256}", absent=sha256):
                self.client().head_object(Bucket=self.bucket, Key=self.key(sha256))
        except NotFound:
            return False
        return True

    def missing(self, shas: Iterable[str]) -> set[str]:
        wanted = sorted(set(shas))
        if len(wanted) <= 1:
            return {sha for sha in wanted if not self.has(sha)}
        with ThreadPoolExecutor(max_workers=min(self.workers, len(wanted))) as pool:
            held = list(pool.map(self.has, wanted))
        return {sha for sha, there in zip(wanted, held, strict=True) if not there}

    def put(self, source: Path, sha256: str) -> None:
        with open(source, "rb") as stream:
            self._upload(stream, sha256, str(source))

    def put_bytes(self, data: bytes, sha256: str) -> None:
        self._upload(io.BytesIO(data), sha256, f"{len(data)} bytes")

    def _upload(self, stream: BinaryIO, sha256: str, what: str) -> None:
        if self.has(sha256):
            return  # content-addressed: the same name is the same bytes
        reader = _HashingReader(stream, sha256, what)
        key = self.key(sha256)
        with self._errors(f"uploading {what}"):
            self.client().upload_fileobj(reader, self.bucket, key, Config=self._transfer)
        try:
            reader.check()  # normally done at EOF, before the upload could complete
        except Corrupt:
            with self._errors(f"removing {key}"):
                self.client().delete_object(Bucket=self.bucket, Key=key)
            raise

    def copy_to(self, sha256: str, dest: Path, what: str) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Beside the target so the rename is atomic; never a name a reader would take.
        partial = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:12]}.partial")
        try:
            with open(partial, "xb") as out:
                writer = _HashingWriter(out)
                with self._errors(f"downloading {what}", absent=self._absent(sha256, what)):
                    self.client().download_fileobj(
                        self.bucket, self.key(sha256), writer, Config=self._transfer
                    )
            actual = writer.hash.hexdigest()
            if actual != sha256:
                raise Corrupt(
                    f"{what}: the content stored in {self.location} has sha256 {actual}, "
                    f"the manifest says {sha256}"
                )
            os.replace(partial, dest)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise

    def read(self, sha256: str, what: str) -> bytes:
        with self._errors(f"downloading {what}", absent=self._absent(sha256, what)):
            body = self.client().get_object(Bucket=self.bucket, Key=self.key(sha256))["Body"]
            try:
                data: bytes = body.read()
            finally:
                body.close()
        return verify(data, sha256, f"{what} (in {self.location})")

    def close(self) -> None:
        """Release the connections; a later call makes a new client."""
        with self._lock:
            if self._s3 is not None:
                self._s3.close()
            self._s3 = None


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
        with ThreadPoolExecutor(max_workers=min(8, len(wanted))) as pool:
            list(pool.map(lambda sha: self.store.put(cache.path(sha), sha), wanted))
        return wanted

    def download(self, wanted: Mapping[str, str]) -> tuple[list[str], dict[str, GitmlError]]:
        """Fetch into the cache the content it lacks (sha256 -> what it is, for messages).

        Returns what was downloaded, and why each failure failed; only for a
        bucket (a folder store is read in place, nothing to download).
        """
        if self.store.local or self.cache is None:
            return [], {}
        cache = self.cache
        need = sorted(cache.missing(wanted))
        done: list[str] = []
        failed: dict[str, GitmlError] = {}
        for sha in need:
            try:
                self.store.copy_to(sha, cache.path(sha), wanted[sha])
            except GitmlError as exc:
                failed[sha] = exc
            else:
                done.append(sha)
        return done, failed


def shared_store(config: Config, settings_root: Path, data_dir: Path) -> SharedStore:
    store = configured_store(config, settings_root, data_dir)
    cache = cache_store(data_dir)
    same = isinstance(store, ExternalStore) and store.root.resolve() == cache.root.resolve()
    return SharedStore(store, None if same else cache)
