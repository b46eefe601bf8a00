"""Added and removed line counts between two versions of a file, as ``git diff --stat``.

Git counts the lines of a minimal diff (Myers' algorithm). For a minimal
diff, added = len(b) - LCS and removed = len(a) - LCS, so only the edit
distance is needed, never the edit script: a Myers forward pass that keeps
one row of furthest-reaching paths. Common leading and trailing lines are
stripped first (as git's xdiff does), which leaves only the changed region
for the quadratic part. A rewrite so large that the exact pass would take
seconds is counted as a multiset difference of lines instead: the same
numbers unless lines moved, and never a stall for ``gitml runs diff``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

# Git looks for a NUL byte in the first 8000 bytes to call a file binary.
BINARY_PROBE = 8000

# The exact pass takes about d * d / 2 steps for d changed lines (and a
# microsecond or so each); above this many it counts lines instead.
EXACT_STEPS = 1_000_000


def is_binary(data: bytes) -> bool:
    return b"\0" in data[:BINARY_PROBE]


def split_lines(data: bytes) -> list[bytes]:
    """Lines as git counts them: a last line without a newline is still a line."""
    return data.splitlines(keepends=True)


def count_changes(old: bytes, new: bytes) -> tuple[int, int]:
    """(added, removed) lines from ``old`` to ``new``."""
    if old == new:
        return 0, 0
    a, b = split_lines(old), split_lines(new)
    start = 0
    limit = min(len(a), len(b))
    while start < limit and a[start] == b[start]:
        start += 1
    end_a, end_b = len(a), len(b)
    while end_a > start and end_b > start and a[end_a - 1] == b[end_b - 1]:
        end_a -= 1
        end_b -= 1
    a, b = a[start:end_a], b[start:end_b]
    if not a or not b:
        return len(b), len(a)
    distance = _edit_distance(a, b)
    if distance is None:
        removed = Counter(a)
        removed.subtract(Counter(b))
        gone = sum(n for n in removed.values() if n > 0)
        common = len(a) - gone
        return len(b) - common, gone
    common = (len(a) + len(b) - distance) // 2
    return len(b) - common, len(a) - common


def _edit_distance(a: Sequence[bytes], b: Sequence[bytes]) -> int | None:
    """The number of inserted plus deleted lines of a minimal diff (Myers, 1986).

    None when it would take more than ``EXACT_STEPS`` steps.
    """
    # Lines compared as small ints: hashing each line once is cheaper than
    # comparing bytes objects in the inner loop.
    ids: dict[bytes, int] = {}
    xa = [ids.setdefault(line, len(ids)) for line in a]
    xb = [ids.setdefault(line, len(ids)) for line in b]
    n, m = len(xa), len(xb)
    most = n + m
    offset = most + 1
    v = [0] * (2 * most + 3)
    steps = 0
    for d in range(most + 1):
        for k in range(-d, d + 1, 2):
            if k == -d or (k != d and v[offset + k - 1] < v[offset + k + 1]):
                x = v[offset + k + 1]
            else:
                x = v[offset + k - 1] + 1
            y = x - k
            while x < n and y < m and xa[x] == xb[y]:
                x += 1
                y += 1
            v[offset + k] = x
            if x >= n and y >= m:
                return d
        steps += d + 1
        if steps > EXACT_STEPS:
            return None
    return most  # not reached: d = n + m always ends the walk
