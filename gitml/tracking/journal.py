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
``T key json`` (tag), ``R run_id json`` (a run created with ``commit=False``
and not committed yet: its record and the parents of its first commit; always
a segment's first line, so that other processes can find the run,
``journaled_creates``). Keys
cannot hold tabs or newlines (validation forbids them); values are JSON.
A line that cannot be read (torn by a kill mid-write, or damaged) is skipped
and reported; every other line is still recovered.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitml.errors import InvalidInput
from gitml.format.records import RUN_ID, Run
from gitml.tracking import metrics, validation


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
        self._size = 0  # bytes of whole records: where a failed write is cut back to

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
        """Append ``data`` whole, or raise and leave the file as it was.

        A full disk can take part of a write: the part is cut off, so the
        next record does not join it on one unreadable line.
        """
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except BaseException:
            os.ftruncate(self._fd, self._size)
            raise
        self._size += len(data)

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


def parse(data: bytes) -> tuple[Entries, list[str]]:
    """A segment's records, and why each line that could not be read was skipped."""
    entries = Entries()
    skipped: list[str] = []
    lines = data.split(b"\n")
    for number, raw in enumerate(lines[:-1], 1):
        try:
            _record(entries, raw)
        except (ValueError, InvalidInput) as exc:  # pydantic's ValidationError is a ValueError
            why = str(exc).splitlines()[0]
            skipped.append(f"line {number} skipped, it cannot be read ({why}): {raw[:80]!r}")
    if lines[-1]:
        skipped.append(
            f"line {len(lines)} skipped, its writer died while writing it: {lines[-1][:80]!r}"
        )
    return entries, skipped


def _record(entries: Entries, raw: bytes) -> None:
    """Add one line's record to ``entries``; ValueError or InvalidInput when it is bad."""
    kind, key_b, rest = raw.split(b"\t", 2)
    key = key_b.decode()
    if kind == b"M":
        step, timestamp, value = rest.split(b"\t")
        ln = metrics.line(int(step), int(timestamp), float(value))
        entries.metrics.setdefault(validation.key("metric", key), []).append(ln)
    elif kind in (b"P", b"T"):
        text = json.loads(rest)
        if not isinstance(text, str):
            raise ValueError(f"a value must be a JSON string, got {type(text).__name__}")
        kept = entries.params if kind == b"P" else entries.tags
        kept[validation.key("param" if kind == b"P" else "tag", key)] = text
    elif kind == b"R":
        payload = json.loads(rest)
        if not isinstance(payload, dict) or not isinstance(payload.get("parents"), list):
            raise ValueError("a run record must be an object with 'run' and 'parents'")
        if Run.model_validate(payload.get("run")).id != key:
            raise ValueError(f"the run record is not run {key}'s")
        entries.create = payload
    else:
        raise ValueError(f"unknown record kind {kind!r}")


@dataclass
class Orphan:
    """A segment whose writer is gone, locked by us until ``release``."""

    run_id: str
    name: str
    path: Path
    fd: int

    def read(self) -> tuple[Entries, list[str]]:
        return parse(self.path.read_bytes())

    def release(self) -> None:
        """Its records are committed: remove it, then let go of the lock."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self.fd)

    def keep(self) -> None:
        """Let go of the lock and leave the file for a later recovery."""
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


def journaled_creates(
    root: Path, run_id: str | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(run id, its ``R`` record's payload) for each segment under ``root`` that
    starts with one: runs created and not committed yet, as far as the segment
    says (its writer may have committed it since). ``run_id``: that run's only.

    The segments are read without their writers' locks: the ``R`` line is each
    one's first write, whole or not there, and a segment committed meanwhile
    is gone (skipped) or starts a run its ref already has.
    """
    if run_id is not None and not re.fullmatch(RUN_ID, run_id):
        return  # not a run id: no segment can be its, and it must not reach the glob
    for path in sorted(root.glob(f"{run_id or '*'}.*.log")):
        try:
            with path.open("rb") as f:
                first = f.readline()
        except FileNotFoundError:
            continue
        if first.startswith(b"R\t"):
            entries, _skipped = parse(first)  # a torn line is skipped, not an error
            if entries.create is not None:
                yield path.name.split(".")[0], entries.create
