"""``Store.diff_stat`` against ``git diff --numstat`` on real commits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gitml.errors import NotFound
from gitml.git.store import FileChange, Store
from testing.git import git


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def numstat(repo: Path, a: str, b: str) -> dict[str, tuple[str, str]]:
    """path -> (added, removed) as git prints them; '-' for binary files."""
    out = {}
    for line in git(repo, "diff", "--numstat", "-M", a, b).splitlines():
        added, removed, path = line.split("\t")
        if " => " in path:
            path = path.split(" => ")[1]
        out[path] = (added, removed)
    return out


def test_matches_git_numstat(repo: Path) -> None:
    (repo / "keep.py").write_text("".join(f"line {i}\n" for i in range(50)))
    (repo / "gone.txt").write_text("bye\nnow\n")
    (repo / "model.bin").write_bytes(b"\0\1\2")
    (repo / "big.txt").write_text("".join(f"row {i}\n" for i in range(100)))
    (repo / "run.sh").write_text("echo hi\n")
    first = commit_all(repo, "first")

    (repo / "keep.py").write_text(
        "".join(f"line {i}\n" if i % 10 else f"changed {i}\n" for i in range(55))
    )
    (repo / "gone.txt").unlink()
    (repo / "model.bin").write_bytes(b"\0\1\2\3\4")
    git(repo, "mv", "big.txt", "moved.txt")
    with (repo / "moved.txt").open("a") as f:
        f.write("one more\n")
    (repo / "new" / "deep").mkdir(parents=True)
    (repo / "new" / "deep" / "file.txt").write_text("a\nb\nc\n")
    os.chmod(repo / "run.sh", 0o755)
    second = commit_all(repo, "second")

    changes = {c.path: c for c in Store(repo).diff_stat(first, second)}
    expected = numstat(repo, first, second)
    assert set(changes) == set(expected)
    for path, (added, removed) in expected.items():
        change = changes[path]
        if added == "-":
            assert change.binary and (change.added, change.removed) == (0, 0)
        else:
            assert (change.added, change.removed) == (int(added), int(removed)), path

    assert changes["gone.txt"].status == "deleted"
    assert changes["gone.txt"].new_size is None
    assert changes["new/deep/file.txt"].status == "added"
    assert changes["keep.py"].status == "modified"
    assert changes["run.sh"] == FileChange("run.sh", "modified", 0, 0, False, None, 8, 8)
    assert changes["moved.txt"].status == "renamed"
    assert changes["moved.txt"].old_path == "big.txt"
    assert changes["model.bin"].binary
    assert (changes["model.bin"].old_size, changes["model.bin"].new_size) == (3, 5)
    assert list(changes) == sorted(changes)


def test_same_commit_and_reverse(repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD").strip()
    (repo / "train.py").write_text("print('training')\nprint('more')\n")
    second = commit_all(repo, "more")
    store = Store(repo)
    assert store.diff_stat(first, first) == []
    forward = store.diff_stat(first, second)
    backward = store.diff_stat(second, first)
    assert [(c.path, c.added, c.removed) for c in forward] == [("train.py", 1, 0)]
    assert [(c.path, c.added, c.removed) for c in backward] == [("train.py", 0, 1)]


def test_a_copy_is_an_added_file_as_in_git_diff(repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD").strip()
    (repo / "copy.py").write_text((repo / "train.py").read_text())
    second = commit_all(repo, "copy")
    changes = Store(repo).diff_stat(first, second)
    assert changes == [FileChange("copy.py", "added", 1, 0, False, None, None, 18)]


def test_not_a_commit(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD").strip()
    tree = git(repo, "rev-parse", "HEAD^{tree}").strip()
    with pytest.raises(NotFound, match="not a commit"):
        Store(repo).diff_stat(head, tree)
