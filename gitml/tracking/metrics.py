"""Metric history in fixed-size chunks.

A metric's points live in ``metrics/<g>/<key>.<i>.tsv``: chunk ``i`` holds
points ``i*CHUNK_POINTS`` to ``(i+1)*CHUNK_POINTS - 1`` and sits in group
``g = i // CHUNKS_PER_GROUP``. A flush writes the chunks it fills and rewrites
only the last, partial one (at most ``CHUNK_POINTS`` lines), so old data is
never rewritten, and after ``git gc`` the partial versions of a chunk delta
against each other. The folders it rewrites hold at most ``CHUNKS_PER_GROUP``
chunks per key and one entry per 100,000 points, so a flush costs the same at
the millionth point as at the first (a single flat folder grew by 45 bytes per
1,000 points and made late flushes measurably slower). Groups are shared by
all keys rather than one folder per key, because every folder is one more
object to create on each flush, and creating files is what a short run's
commit spends its time on (it has 4 ms). The key is everything
before the last two dots. Each line is
``step<TAB>timestamp<TAB>value`` with the value in Python's round-trip repr
(``nan``, ``inf`` and ``-inf`` included).
"""

from __future__ import annotations

from collections.abc import Iterator

from gitml.format.layout import METRICS_DIR
from gitml.git.store import Snapshot
from gitml.tracking.entities import Metric

CHUNK_POINTS = 1000
CHUNKS_PER_GROUP = 100


def encode_key(key: str) -> str:
    """Keys may hold '/', tree entry names may not; '%' is outside the key alphabet."""
    return key.replace("/", "%2F")


def decode_key(name: str) -> str:
    return name.replace("%2F", "/")


def line(step: int, timestamp: int, value: float) -> bytes:
    return f"{step}\t{timestamp}\t{value!r}\n".encode()


def chunk_path(key: str, index: int) -> str:
    return f"{METRICS_DIR}/{index // CHUNKS_PER_GROUP:04d}/{encode_key(key)}.{index:06d}.tsv"


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
    """The index and content of the last chunk of ``key`` (0 and empty when none).

    Chunks are numbered without gaps, so the last one is found with a
    doubling then halving search over names: about 2 log2(n) lookups instead
    of reading the whole folder, which keeps a flush's cost flat as the
    history grows.
    """
    if snap is None or snap.lookup(chunk_path(key, 0)) is None:
        return 0, b""
    present, absent = 0, 1
    while snap.lookup(chunk_path(key, absent)) is not None:
        present, absent = absent, absent * 2
    while absent - present > 1:
        middle = (present + absent) // 2
        if snap.lookup(chunk_path(key, middle)) is not None:
            present = middle
        else:
            absent = middle
    return present, snap.read(chunk_path(key, present)) or b""


def _chunks(snap: Snapshot, key: str) -> list[tuple[int, str]]:
    """(index, blob sha) of every chunk of ``key``, in order."""
    wanted = encode_key(key)
    found = []
    for group, is_group, _ in snap.listdir(METRICS_DIR):
        if not is_group:
            continue
        for name, is_dir, sha in snap.listdir(f"{METRICS_DIR}/{group}"):
            parts = name.rsplit(".", 2)
            if not is_dir and len(parts) == 3 and parts[0] == wanted and parts[1].isdigit():
                found.append((int(parts[1]), sha))
    return sorted(found)


def history(snap: Snapshot, key: str) -> Iterator[Metric]:
    """Every point of ``key`` in the order they were committed."""
    for _index, sha in _chunks(snap, key):
        for raw in snap.blob(sha).splitlines():
            step, ts, value = raw.split(b"\t")
            yield Metric(key, float(value), int(ts), int(step))
