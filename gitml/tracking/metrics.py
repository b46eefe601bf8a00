"""Metric history in fixed-size chunks.

A metric's points live under ``metrics/<key>/<hi>/<lo>.tsv``: chunk ``i``
holds points ``i*CHUNK_POINTS`` to ``(i+1)*CHUNK_POINTS - 1``, ``hi = i //
CHUNKS_PER_DIR``. A flush rewrites only the last, partial chunk (at most
``CHUNK_POINTS`` lines) plus the two small trees above it, so a flush costs the
same at the millionth point as at the first, and after ``git gc`` the partial
versions of a chunk delta against each other. Each line is
``step<TAB>timestamp<TAB>value`` with the value in Python's round-trip repr
(``nan``, ``inf`` and ``-inf`` included).
"""

from __future__ import annotations

from collections.abc import Iterator

from ..store import Snapshot
from .entities import Metric

CHUNK_POINTS = 1000
CHUNKS_PER_DIR = 1000


def encode_key(key: str) -> str:
    """Keys may hold '/', tree entry names may not; '%' is outside the key alphabet."""
    return key.replace("/", "%2F")


def decode_key(name: str) -> str:
    return name.replace("%2F", "/")


def line(step: int, timestamp: int, value: float) -> bytes:
    return f"{step}\t{timestamp}\t{value!r}\n".encode()


def chunk_path(key: str, index: int) -> str:
    hi, lo = divmod(index, CHUNKS_PER_DIR)
    return f"metrics/{encode_key(key)}/{hi:04d}/{lo:03d}.tsv"


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
    base = f"metrics/{encode_key(key)}"
    dirs = sorted(name for name, is_dir, _ in snap.listdir(base) if is_dir)
    if not dirs:
        return 0, b""
    files = sorted(name for name, is_dir, _ in snap.listdir(f"{base}/{dirs[-1]}") if not is_dir)
    if not files:
        return int(dirs[-1]) * CHUNKS_PER_DIR, b""
    index = int(dirs[-1]) * CHUNKS_PER_DIR + int(files[-1].split(".")[0])
    return index, snap.read(f"{base}/{dirs[-1]}/{files[-1]}") or b""


def history(snap: Snapshot, key: str) -> Iterator[Metric]:
    """Every point of ``key`` in the order they were committed."""
    base = f"metrics/{encode_key(key)}"
    for hi, is_dir, _ in sorted(snap.listdir(base)):
        if not is_dir:
            continue
        for _name, _, sha in sorted(e for e in snap.listdir(f"{base}/{hi}") if not e[1]):
            for raw in snap.blob(sha).splitlines():
                step, ts, value = raw.split(b"\t")
                yield Metric(key, float(value), int(ts), int(step))


def keys(snap: Snapshot) -> list[str]:
    return sorted(decode_key(name) for name, is_dir, _ in snap.listdir("metrics") if is_dir)
