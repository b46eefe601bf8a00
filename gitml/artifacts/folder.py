"""Artifacts stored by content.

Small files are Git blobs in the run's tree (``artifacts/<path>``), so they
travel with ``git push`` and identical content is stored once. Files above the
configured threshold go to an external store keyed by sha256, so repositories
stay pushable to Git hosts: a folder (``ExternalStore``, here) or an
S3-compatible bucket (``gitml.artifacts``). The manifest
(``artifacts.yaml``) records path, sha256, size and where the bytes are; every
read checks the digest.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from gitml.errors import Corrupt, NotFound
from gitml.format.paths import inside, join

CHUNK = 1024 * 1024


def folder_files(root: Path, artifact_path: str | None) -> list[tuple[str, Path]]:
    """The files ``log_artifacts`` logs from the folder ``root``, with their artifact paths.

    Symlinked folders are not walked into. A symlinked file is logged (its
    target's content) only when the target is inside ``root`` too: one leading
    elsewhere, such as ``~/.ssh/id_rsa``, would copy a file nobody chose to log
    into a repository that gets pushed, so the whole call is refused.
    """
    return [
        (join(artifact_path, rel), inside(root, rel, "log_artifacts: a symlink"))
        for rel in sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    ]


def digest_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def verify(data: bytes, sha256: str, what: str) -> bytes:
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise Corrupt(f"{what}: content has sha256 {actual}, the manifest says {sha256}")
    return data


class ExternalStore:
    """A folder of files named by their sha256 (``ab/cdef…``), shared or local.

    One of the artifact store backends (``gitml.artifacts.ArtifactStore``).
    """

    local = True  # reads need no download, so nothing is cached in front of it

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def location(self) -> str:
        return str(self.root)

    def path(self, sha256: str) -> Path:
        """Where the content ``sha256`` is (or would be) stored."""
        return self.root / sha256[:2] / sha256[2:]

    _path = path

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def missing(self, shas: Iterable[str]) -> set[str]:
        """The digests among ``shas`` that the folder does not hold."""
        return {sha for sha in set(shas) if not self.has(sha)}

    def close(self) -> None:
        """Nothing to release; here for the backend interface."""

    def put(self, source: Path, sha256: str) -> None:
        """Store ``source`` as ``sha256``, checking the digest of what was copied.

        The file may have changed since it was hashed (a checkpoint still being
        written); stored under the wrong name it would poison every later read.
        """
        target = self._path(sha256)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            h = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                while block := src.read(CHUNK):
                    h.update(block)
                    out.write(block)
            if h.hexdigest() != sha256:
                raise Corrupt(
                    f"{source}: content has sha256 {h.hexdigest()} now, not {sha256}; "
                    "did it change while it was being logged?"
                )
            os.replace(tmp, target)  # atomic: readers never see a partial file
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_bytes(self, data: bytes, sha256: str) -> None:
        fd, tmp = tempfile.mkstemp(prefix="gitml-artifact-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            self.put(Path(tmp), sha256)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def copy_to(self, sha256: str, dest: Path, what: str) -> None:
        """Copy the content to ``dest``, checking its digest on the way."""
        source = self._path(sha256)
        if not source.exists():
            raise NotFound(
                f"{what}: content {sha256} is missing from the artifact store {self.root}"
            )
        h = hashlib.sha256()
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".partial")
        with open(source, "rb") as src, open(tmp, "wb") as out:
            while block := src.read(CHUNK):
                h.update(block)
                out.write(block)
        if h.hexdigest() != sha256:
            tmp.unlink()
            raise Corrupt(
                f"{what}: stored content has sha256 {h.hexdigest()}, the manifest says {sha256}"
            )
        os.replace(tmp, dest)

    def read(self, sha256: str, what: str) -> bytes:
        source = self._path(sha256)
        if not source.exists():
            raise NotFound(
                f"{what}: content {sha256} is missing from the artifact store {self.root}"
            )
        return verify(source.read_bytes(), sha256, what)
