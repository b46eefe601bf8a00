"""Metric history in fixed-size chunks.

A metric's points live under ``metrics/<key>/<i>.tsv``: chunk ``i`` holds
points ``i*CHUNK_POINTS`` to ``(i+1)*CHUNK_POINTS - 1``. A flush writes the
chunks it fills and rewrites only the last, partial one (at most
``CHUNK_POINTS`` lines), so old data is never rewritten, and after ``git gc``
the partial versions of a chunk delta against each other. The key's folder is
rewritten too: one 38-byte entry per 1,000 points (38 KB at a million points,
under a millisecond to write). A deeper fan-out would bound that but costs a
tree object per key on every flush, and object creation is what a short run's
commit spends its time on (issue 2's 4 ms target). Each line is
``step<TAB>timestamp<TAB>value`` with the value in Python's round-trip repr
(``nan``, ``inf`` and ``-inf`` included).
"""

from __future__ import annotations

from collections.abc import Iterator

from ..store import Snapshot
from .entities import Metric

CHUNK_POINTS = 1000


def encode_key(key: str) -> str:
    """Keys may hold '/', tree entry names may not; '%' is outside the key alphabet."""
    return key.replace("/", "%2F")


def decode_key(name: str) -> str:
    return name.replace("%2F", "/")


def line(step: int, timestamp: int, value: float) -> bytes:
    return f"{step}\t{timestamp}\t{value!r}\n".encode()


def chunk_path(key: str, index: int) -> str:
    return f"metrics/{encode_key(key)}/{index:06d}.tsv"


def append(snap: Snapshot | None, key: str, lines: list[bytes]) -> dict[str, bytes]:
    """The chunk files that hold ``lines`` appended after the points already in ``snap``."""
    index, existing = _last_chunk(snap, key)
    count = existing.count(b"\n")
    if count >= CHUNK_POINTS:
        index, existing, count = index + 1, b"", 0
    files: dict[str, bytes] = {}
    pos = 0
    while pos < len(lines):
        take = CHUNK_POINTS - count
        files[chunk_path(key, index)] = existing + b"".join(lines[pos : pos + take])
        pos += take
        index, existing, count = index + 1, b"", 0
    return files


def _last_chunk(snap: Snapshot | None, key: str) -> tuple[int, bytes]:
    if snap is None:
        return 0, b""
    chunks = _chunks(snap, key)
    if not chunks:
        return 0, b""
    index, sha = chunks[-1]
    return index, snap.blob(sha)


def _chunks(snap: Snapshot, key: str) -> list[tuple[int, str]]:
    """(index, blob sha) of every chunk of ``key``, in order."""
    return sorted(
        (int(name.split(".")[0]), sha)
        for name, is_dir, sha in snap.listdir(f"metrics/{encode_key(key)}")
        if not is_dir
    )


def history(snap: Snapshot, key: str) -> Iterator[Metric]:
    """Every point of ``key`` in the order they were committed."""
    for _index, sha in _chunks(snap, key):
        for raw in snap.blob(sha).splitlines():
            step, ts, value = raw.split(b"\t")
            yield Metric(key, float(value), int(ts), int(step))


def keys(snap: Snapshot) -> list[str]:
    return sorted(decode_key(name) for name, is_dir, _ in snap.listdir("metrics") if is_dir)
