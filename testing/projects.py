"""Project folders and Git remotes for the projects tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

from .git import git

# MLflow's example projects, in "shared" beside the checkout (or beside the
# folder of git worktrees holding it).
COMPAT = next(
    (
        found
        for folder in Path(__file__).resolve().parents[1:]
        if (found := folder / "shared" / "compat" / "mlflow-mlprojects").is_dir()
    ),
    Path(__file__).resolve().parents[2] / "shared" / "compat" / "mlflow-mlprojects",
)


def write_project(root: Path, mlproject: str | None, **files: str) -> Path:
    """``root`` with an ``MLproject`` (unless None) and ``files`` (name -> text, dedented)."""
    root.mkdir(parents=True, exist_ok=True)
    if mlproject is not None:
        (root / "MLproject").write_text(textwrap.dedent(mlproject))
    for name, text in files.items():
        path = root / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def bare_remote(source: Path, bare: Path) -> str:
    """Push every branch and tag of ``source`` to a new bare repository; its file:// URL."""
    git(bare.parent, "init", "-q", "--bare", "-b", "main", str(bare))
    git(source, "push", "-q", str(bare), "--all")
    git(source, "push", "-q", str(bare), "--tags")
    return bare.as_uri()
