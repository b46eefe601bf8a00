"""Line counts agree with ``git diff --numstat`` (real git, random files)."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gitml.git import linediff

# Few distinct lines, so that random files share many of them, as versions of code do.
lines = st.lists(st.sampled_from([b"a\n", b"b\n", b"c\n", b"\n", b"def f():\n", b"x"]), max_size=30)


def git_numstat(old: bytes, new: bytes) -> tuple[int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "a", Path(tmp) / "b"
        a.write_bytes(old)
        b.write_bytes(new)
        done = subprocess.run(
            ["git", "diff", "--no-index", "--numstat", "--diff-algorithm=myers", str(a), str(b)],
            capture_output=True,
            text=True,
            check=False,
        )
    if not done.stdout:
        return 0, 0
    added, removed, _ = done.stdout.split("\t", 2)
    return int(added), int(removed)


@settings(max_examples=60, deadline=None, database=None)
@given(lines, lines)
def test_counts_match_git(old: list[bytes], new: list[bytes]) -> None:
    a, b = b"".join(old), b"".join(new)
    assert linediff.count_changes(a, b) == git_numstat(a, b)


def test_simple_cases() -> None:
    assert linediff.count_changes(b"", b"") == (0, 0)
    assert linediff.count_changes(b"", b"a\nb\n") == (2, 0)
    assert linediff.count_changes(b"a\nb\n", b"") == (0, 2)
    assert linediff.count_changes(b"a\nb\nc\n", b"a\nB\nc\n") == (1, 1)
    # A missing final newline changes the last line, as git sees it.
    assert linediff.count_changes(b"a\nb", b"a\nb\n") == (1, 1)


def test_a_huge_rewrite_is_counted_without_stalling() -> None:
    old = b"".join(b"old %d\n" % i for i in range(20_000))
    new = b"".join(b"new %d\n" % i for i in range(20_000))
    assert linediff.count_changes(old, new) == (20_000, 20_000)
    # Most lines kept, a few thousand changed: the approximate count is still exact.
    mixed = b"".join((b"new %d\n" if i % 5 == 0 else b"old %d\n") % i for i in range(20_000))
    assert linediff.count_changes(old, mixed) == (4_000, 4_000)


def test_binary_is_a_nul_in_the_first_8000_bytes() -> None:
    assert linediff.is_binary(b"a\0b")
    assert not linediff.is_binary(b"text\n")
    assert not linediff.is_binary(b"x" * 8000 + b"\0")
