"""Temporary Git repositories driven by the real ``git`` binary.

The identity and configuration are pinned in the environment, so tests never
read the developer's ``$HOME``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

IDENTITY = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Committer",
    "GIT_COMMITTER_EMAIL": "committer@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git_env(home: Path) -> dict[str, str]:
    """An environment for ``git`` and for gitml child processes: pinned, no user config."""
    env = dict(os.environ)
    env.update(IDENTITY)
    env["HOME"] = str(home)
    env["GIT_CONFIG_GLOBAL"] = str(home / ".gitconfig")
    return env


def git(cwd: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    """Run real git; returns stdout, raises with stderr on failure."""
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
    return result.stdout


def init_repo(path: Path, *, bare: bool = False, commit: bool = True) -> Path:
    """A new repository with branch ``main`` and, unless bare, one commit of ``train.py``."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main", *(["--bare"] if bare else []))
    if not bare and commit:
        (path / "train.py").write_text("print('training')\n")
        git(path, "add", "train.py")
        git(path, "commit", "-q", "-m", "initial")
    return path


class FixedClock:
    """A clock that moves only when told, so commit times and timestamps are exact."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def commit_file_on_ref(repo: Path, ref: str, name: str, content: str) -> str:
    """Replace ``name`` (a path, "a/b.yaml" too) in the tip tree of ``ref`` using plumbing,
    as a foreign writer would."""
    blob = git(repo, "hash-object", "-w", "--stdin", stdin=content).strip()
    # A scratch index, so that the work tree's own index is never touched.
    scratch = Path(git(repo, "rev-parse", "--absolute-git-dir").strip(), "scratch-index")
    env = {**os.environ, "GIT_INDEX_FILE": str(scratch)}
    git(repo, "read-tree", ref, env=env)
    git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{name}", env=env)
    tree = git(repo, "write-tree", env=env).strip()
    scratch.unlink()
    tip = git(repo, "rev-parse", ref).strip()
    commit = git(repo, "commit-tree", tree, "-p", tip, "-m", "hand-edited").strip()
    git(repo, "update-ref", ref, commit, tip)
    return commit


def fsck(repo: Path) -> None:
    """``git fsck --full --strict`` finds nothing but dangling objects."""
    done = subprocess.run(
        ["git", "fsck", "--full", "--strict"], cwd=repo, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    problems = [
        ln
        for ln in (done.stdout + done.stderr).splitlines()
        if ln and not ln.startswith(("dangling", "Checking", "notice"))
    ]
    assert problems == [], problems


def traced_command_lines(trace: Path) -> list[str]:
    """The git commands a ``GIT_TRACE`` file recorded, each as its arguments after
    ``git`` (``fetch --stdin origin``), in order: those run directly and those git
    ran itself."""
    lines = []
    for line in trace.read_text().splitlines():
        _, found, rest = line.partition("trace: built-in: git ")
        if found:
            lines.append(rest)
    return lines


def traced_commands(trace: Path) -> list[str]:
    """The git commands a ``GIT_TRACE`` file recorded, by name (``fetch``, ``merge-base``)."""
    return [line.split(" ", 1)[0] for line in traced_command_lines(trace)]
