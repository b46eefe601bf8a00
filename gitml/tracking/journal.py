"""The append-only journal that makes buffered writes survive ``kill -9``.

Each process writing to a run appends to its own segment file
``<gitdir>/gitml/journal/<run_id>.<pid>-<random>.log`` before the logging call returns (one
``write(2)``: the data is in the kernel's page cache, which outlives the
process). The writer holds an exclusive ``flock`` on its segment for as long as
the segment's data is not committed; the kernel drops the lock when the
process dies, however it dies, which is how recovery tells an orphan from a
segment still in use. A flush commits a segment's records with a
``Gitml-Journal: <segment>`` trailer, then unlinks it, so a recovery that
finds a segment whose trailer is already in the run's history knows it was
committed and only deletes it.

Records, one per line, fields separated by tabs:
``M key step timestamp value`` (metric), ``P key json`` (param),
``T key json`` (tag), ``R run_id json`` (a run created by the fluent API and
not committed yet: its record and the parents of its first commit). Keys
cannot hold tabs or newlines (validation forbids them); values are JSON.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Entries:
    """What a segment (or a buffer) holds, in the order it was logged."""

    metrics: dict[str, list[bytes]] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    # {"run": <run record>, "parents": [<sha>...]} for a run not yet committed
    create: dict[str, Any] | None = None

    def __bool__(self) -> bool:
        return bool(self.metrics or self.params or self.tags or self.create)

    def extend(self, other: Entries) -> None:
        if self.create is None:
            self.create = other.create
        for key, lines in other.metrics.items():
            self.metrics.setdefault(key, []).extend(lines)
        self.params.update(other.params)
        self.tags.update(other.tags)


class Segment:
    """One open, locked journal file."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.name = path.stem
        self._fd = fd

    @classmethod
    def create(cls, directory: Path, run_id: str) -> Segment:
        path = directory / f"{run_id}.{os.getpid()}-{secrets.token_hex(6)}.log"
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o644)
        except FileNotFoundError:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, flags, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return cls(path, fd)

    def write(self, data: bytes) -> None:
        os.write(self._fd, data)

    def close(self) -> None:
        """Close this descriptor only (a forked child's copy); the file stays."""
        os.close(self._fd)

    def discard(self) -> None:
        """Its records are committed: remove it, then let go of the lock."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)


def create_record(run_id: str, run: dict[str, Any], parents: list[str]) -> bytes:
    return f"R\t{run_id}\t{json.dumps({'run': run, 'parents': parents})}\n".encode()


def metric_record(key: str, line: bytes) -> bytes:
    return b"M\t" + key.encode() + b"\t" + line


def param_record(key: str, value: str) -> bytes:
    return f"P\t{key}\t{json.dumps(value)}\n".encode()


def tag_record(key: str, value: str) -> bytes:
    return f"T\t{key}\t{json.dumps(value)}\n".encode()


def parse(data: bytes) -> Entries:
    """Read a segment; a torn last line (the process died mid-write) is dropped."""
    entries = Entries()
    for raw in data.split(b"\n")[:-1]:
        kind, key_b, rest = raw.split(b"\t", 2)
        key = key_b.decode()
        if kind == b"M":
            entries.metrics.setdefault(key, []).append(rest + b"\n")
        elif kind == b"P":
            entries.params[key] = json.loads(rest)
        elif kind == b"T":
            entries.tags[key] = json.loads(rest)
        elif kind == b"R":
            entries.create = json.loads(rest)
    return entries


@dataclass
class Orphan:
    """A segment whose writer is gone, locked by us until ``release``."""

    run_id: str
    name: str
    path: Path
    fd: int

    def read(self) -> Entries:
        return parse(self.path.read_bytes())

    def release(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self.fd)


def orphans(root: Path) -> Iterator[Orphan]:
    """Segments under ``root`` whose writing process has died."""
    if not root.is_dir():
        return
    for path in sorted(root.glob("*.log")):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # its writer is alive
            continue
        if os.fstat(fd).st_nlink == 0:  # committed and unlinked while we waited
            os.close(fd)
            continue
        yield Orphan(path.name.split(".")[0], path.stem, path, fd)
