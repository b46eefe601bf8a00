"""What every artifact store is, and what every bucket-like store shares.

A store holds content by sha256. ``BucketStore`` is the part common to the
object stores (S3, Google Cloud Storage, Azure Blob Storage): the key layout
(``prefix/ab/cdef…``, the folder store's layout), the digest checked while
uploading and after downloading, batched ``missing``, and one client per
process; beside it, objects listed and downloaded by name below a location
(``objects``, ``fetch``: how ``gitml import mlflow`` reads an MLflow run's
artifacts in a bucket). A backend module implements the few provider calls and
turns the provider's errors into gitml's.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import queue
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Protocol

from gitml.artifacts.folder import CHUNK, verify
from gitml.errors import Corrupt, GitmlError, InvalidInput

# Parts of a transfer above this size go in parallel (S3 wants parts of at least 5 MiB,
# GCS chunks are multiples of 256 KiB: 8 MiB suits all three).
PART_SIZE = 8 * 1024 * 1024
# Look-ups in flight for ``missing``, and parts in flight for one transfer.
WORKERS = 16

# What a store was doing when the provider refused: each backend names the
# permission that operation needs, so a refusal says what to grant.
LOOKUP, UPLOAD, DOWNLOAD, REMOVE = "look up", "upload", "download", "remove"
LIST = "list"


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


class HashingReader:
    """A forward-only reader that hashes what a provider uploads and refuses a wrong digest.

    The check runs as soon as the last byte is read (the size is known, and a
    short read ends the stream too), that is before a provider's client sends
    the last part or commits the block list: an upload of content that does
    not match its name is never completed. Providers that ask where the stream
    is (GCS's resumable uploads) get ``tell``; it cannot seek back.
    """

    def __init__(self, stream: BinaryIO, sha256: str, what: str, size: int) -> None:
        self._stream = stream
        self._hash = hashlib.sha256()
        self._sha256 = sha256
        self._what = what
        self._expected = size
        self.size = 0

    def read(self, size: int | None = -1) -> bytes:
        data = self._stream.read(-1 if size is None else size)
        self._hash.update(data)
        self.size += len(data)
        if size is None or size < 0 or len(data) < size or self.size >= self._expected:
            self.check()
        return data

    def tell(self) -> int:
        return self.size

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        # A provider's client may "seek" to where the stream already is; going back
        # would hash bytes twice, so a retry from an earlier offset fails the upload.
        if (offset, whence) not in ((self.size, io.SEEK_SET), (0, io.SEEK_CUR)):
            raise io.UnsupportedOperation(f"{self._what}: the upload cannot rewind")
        return self.size

    def seekable(self) -> bool:
        return False

    def check(self) -> None:
        actual = self._hash.hexdigest()
        if actual != self._sha256:
            raise Corrupt(
                f"{self._what}: content has sha256 {actual} now, not {self._sha256}; "
                "did it change while it was being logged?"
            )


class HashingWriter:
    """A writer that hashes what a provider's client writes to it, in order, on a thread of
    its own: sha256 runs at about the pace of a download from a nearby server (~330 MB/s
    on the reference machine), so hashing inline would halve the download's throughput.
    hashlib lets go of the GIL while it hashes a block, so the two overlap.

    Use it in a ``with`` block; ``hexdigest`` once the block is over.
    """

    BLOCK = 1024 * 1024  # providers write 8 KiB at a time: handed over in blocks of this

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._hash = hashlib.sha256()
        self._blocks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._thread = threading.Thread(target=self._hash_blocks, daemon=True)

    def __enter__(self) -> HashingWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hand_over()
        self._blocks.put(None)
        self._thread.join()

    def _hash_blocks(self) -> None:
        while (block := self._blocks.get()) is not None:
            self._hash.update(block)

    def _hand_over(self) -> None:
        if self._pending:
            self._blocks.put(b"".join(self._pending))
            self._pending, self._pending_size = [], 0

    def write(self, data: bytes) -> int:
        self._pending.append(bytes(data))
        self._pending_size += len(data)
        if self._pending_size >= self.BLOCK:
            self._hand_over()
        return self._out.write(data)

    def hexdigest(self) -> str:
        assert not self._thread.is_alive(), "hexdigest after the with block"
        return self._hash.hexdigest()


def widen_pool(session: Any, size: int, **options: Any) -> None:
    """Let a requests session keep ``size`` connections a host: requests keeps 10, and past
    that each request in flight opens a connection and throws it away after one use.
    ``options`` go to the adapter; an adapter of another kind (mutual TLS) stays."""
    from requests.adapters import HTTPAdapter

    adapter = HTTPAdapter(pool_maxsize=size, **options)
    for prefix in ("http://", "https://"):
        if type(session.get_adapter(prefix)) is HTTPAdapter:
            session.mount(prefix, adapter)


def file_sha256(stream: BinaryIO) -> str:
    h = hashlib.sha256()
    while block := stream.read(CHUNK):
        h.update(block)
    return h.hexdigest()


class BucketStore(ABC):
    """Content in a bucket (or container), one object per sha256 at ``prefix/ab/cdef…``."""

    local = False
    scheme: ClassVar[str]
    # The permission each operation needs, as the provider names it.
    permissions: ClassVar[dict[str, str]]

    def __init__(
        self, bucket: str, prefix: str, *, part_size: int = PART_SIZE, workers: int = WORKERS
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.part_size = part_size
        self.workers = workers
        self._lock = threading.Lock()
        self._client: Any = None
        self._pid = os.getpid()

    @property
    def location(self) -> str:
        base = f"{self.scheme}://{self.bucket}"
        return f"{base}/{self.prefix}" if self.prefix else base

    def key(self, sha256: str) -> str:
        name = f"{sha256[:2]}/{sha256[2:]}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def client(self) -> Any:
        """The provider's client, made on first use (``gitml runs list`` imports no SDK)."""
        with self._lock:
            # A forked child (DataLoader workers) must not share the parent's connections.
            if self._client is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._client = self._connect()
            return self._client

    def close(self) -> None:
        """Release the connections; a later call makes a new client."""
        with self._lock:
            if self._client is not None:
                self._disconnect(self._client)
            self._client = None

    # -- what a backend implements --------------------------------------------------------

    @abstractmethod
    def _connect(self) -> Any:
        """A new client; ``ArtifactStoreUnavailable`` if the SDK or credentials are missing."""

    def _disconnect(self, client: Any) -> None:
        client.close()

    @abstractmethod
    def _exists(self, key: str) -> bool: ...

    @abstractmethod
    def _upload(self, key: str, reader: HashingReader, size: int) -> bool:
        """Send ``reader`` as ``key``, in parts above ``part_size``; the reader raises on a
        wrong digest before the last part is sent. False when another writer stored the
        key first (the same content, by its name): nothing was sent."""

    @abstractmethod
    def _download(self, key: str, out: BinaryIO) -> str | None:
        """Write the object to ``out`` (a seekable file: ranges may arrive in parallel);
        the sha256 of what was written when it was computed on the way, else None (the
        file is read again to check it)."""

    @abstractmethod
    def _get(self, key: str) -> bytes: ...

    @abstractmethod
    def _list(self, prefix: str) -> Iterator[tuple[str, int]]:
        """``(key, size)`` of every object whose key starts with ``prefix``."""

    @abstractmethod
    def _delete(self, key: str) -> None: ...

    @abstractmethod
    def _refusal(self, exc: Exception) -> tuple[str, str] | None:
        """``(kind, the provider's message)`` for one of the provider's errors, kind being
        ``missing``, ``no-bucket``, ``denied`` or ``other``; None if it is not the provider's."""

    credentials_hint: ClassVar[str] = ""

    # -- the store ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, operation: str, doing: str, *, absent: str | None = None) -> Iterator[None]:
        """The provider's errors as gitml's: ``NotFound(absent)`` for a missing object, else
        one line naming the store, what was being done and, when refused, what to grant."""
        from gitml.errors import NotFound

        self.client()
        try:
            yield
        except (GitmlError, OSError):
            raise
        except Exception as exc:
            refusal = self._refusal(exc)
            if refusal is None:
                raise
            kind, message = refusal
            if kind == "missing" and absent is not None:
                raise NotFound(absent) from None
            if kind == "no-bucket":
                message = f"bucket '{self.bucket}' does not exist"
            elif kind == "denied":
                message = (
                    f"permission denied: the credentials lack {self.permissions[operation]} "
                    f"on bucket '{self.bucket}' ({message}){self.credentials_hint}"
                )
            raise ArtifactStoreUnavailable(
                f"artifact store {self.location}: {doing}: {message}"
            ) from None

    def _absent(self, sha256: str, what: str) -> str:
        return f"{what}: content {sha256} is missing from the artifact store {self.location}"

    def has(self, sha256: str) -> bool:
        with self._errors(LOOKUP, f"looking up {sha256}"):
            return self._exists(self.key(sha256))

    def missing(self, shas: Iterable[str]) -> set[str]:
        wanted = sorted(set(shas))
        if len(wanted) <= 1:
            return {sha for sha in wanted if not self.has(sha)}
        with ThreadPoolExecutor(max_workers=min(self.workers, len(wanted))) as pool:
            held = list(pool.map(self.has, wanted))
        return {sha for sha, there in zip(wanted, held, strict=True) if not there}

    def put(self, source: Path, sha256: str) -> None:
        if not self.has(sha256):  # content-addressed: the same name is the same bytes
            self.put_absent(source, sha256)

    def put_absent(self, source: Path, sha256: str) -> None:
        """``put`` of content the store was just found to lack (``missing``): no look-up,
        which halves the requests of ``gitml push``'s uploads."""
        with open(source, "rb") as stream:
            self._send(stream, os.fstat(stream.fileno()).st_size, sha256, str(source))

    def put_bytes(self, data: bytes, sha256: str) -> None:
        if not self.has(sha256):
            self._send(io.BytesIO(data), len(data), sha256, f"{len(data)} bytes")

    def _send(self, stream: BinaryIO, size: int, sha256: str, what: str) -> None:
        reader = HashingReader(stream, sha256, what, size)
        key = self.key(sha256)
        with self._errors(UPLOAD, f"uploading {what}"):
            if not self._upload(key, reader, size):
                return
        try:
            reader.check()  # normally done at the last byte, before the upload could complete
        except Corrupt:
            with self._errors(REMOVE, f"removing {key}"):
                self._delete(key)
            raise

    def copy_to(self, sha256: str, dest: Path, what: str) -> None:
        def check(out: BinaryIO, actual: str | None) -> None:
            if actual is None:
                out.seek(0)
                actual = file_sha256(out)
            if actual != sha256:
                raise Corrupt(
                    f"{what}: the content stored in {self.location} has sha256 {actual}, "
                    f"the manifest says {sha256}"
                )

        self._download_to(self.key(sha256), dest, what, self._absent(sha256, what), check)

    def _download_to(
        self,
        key: str,
        dest: Path,
        what: str,
        absent: str,
        check: Callable[[BinaryIO, str | None], None] | None = None,
    ) -> None:
        """``key`` into ``dest``, renamed into place only once ``check`` (given the sha256
        computed on the way, if any) accepted it."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Beside the target so the rename is atomic; never a name a reader would take.
        partial = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:12]}.partial")
        try:
            with open(partial, "xb+") as out:
                with self._errors(DOWNLOAD, f"downloading {what}", absent=absent):
                    actual = self._download(key, out)
                if check is not None:
                    check(out, actual)
            os.replace(partial, dest)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise

    def read(self, sha256: str, what: str) -> bytes:
        with self._errors(DOWNLOAD, f"downloading {what}", absent=self._absent(sha256, what)):
            data = self._get(self.key(sha256))
        return verify(data, sha256, f"{what} (in {self.location})")

    # -- objects by name: a location in another tool's layout (an MLflow run's artifacts) --

    def _named(self, path: str) -> str:
        return "/".join(part for part in (self.prefix, path.strip("/")) if part)

    def objects(self, path: str = "") -> list[tuple[str, int]]:
        """``(path, size)`` of every object below ``path``, paths relative to the store's
        prefix, in name order; folder markers (keys ending in ``/``) left out."""
        below = self._named(path)
        start = f"{below}/" if below else ""
        cut = len(self.prefix) + 1 if self.prefix else 0
        with self._errors(LIST, f"listing {start or '/'}"):
            found = [(key[cut:], size) for key, size in self._list(start) if key[-1:] != "/"]
        return sorted(found)

    def fetch(self, path: str, dest: Path) -> None:
        """The object at ``path`` below the store's prefix into ``dest``, whole or not at all."""
        key = self._named(path)
        self._download_to(key, dest, path, f"{path}: no object {key} in bucket '{self.bucket}'")


def bucket_location(value: str, scheme: str, pattern: Any, rule: str) -> tuple[str, str]:
    """``(bucket, prefix)`` of ``scheme://bucket/prefix``, or ``InvalidInput`` naming ``rule``."""
    match = pattern.match(value)
    if match is None:
        raise InvalidInput(f"artifact_store {value!r}: not a bucket name; use {scheme}://{rule}")
    return match["bucket"], (match["prefix"] or "").strip("/")
