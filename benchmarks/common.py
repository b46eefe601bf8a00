"""What the benchmark scripts share: a work folder, MLflow in a subprocess, output rows."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testing.git import git_env  # noqa: E402


def parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: --mlflow-python and --workdir."""
    parse = argparse.ArgumentParser(description=description.splitlines()[0])
    parse.add_argument(
        "--mlflow-python",
        default=sys.executable,
        help="a Python that can import MLflow, for its figures beside gitml's",
    )
    parse.add_argument(
        "--workdir",
        type=Path,
        default=Path.home() / ".cache" / "gitml-bench",
        help="where the benchmark repositories are made (a project-like place: on the "
        "reference machines /tmp creates files six times slower than the home disk)",
    )
    return parse


def work_folder(args: argparse.Namespace, prefix: str) -> Path:
    """A new folder under --workdir, with git's identity pinned for everything below."""
    args.workdir.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix=prefix, dir=args.workdir))
    os.environ.update(git_env(base))
    print(f"working in {base}", flush=True)
    return base


def mlflow_figures(python: str, script: str, *argv: str) -> dict[str, float] | None:
    """Run an MLflow benchmark script; its last line is a JSON object. None without MLflow."""
    try:
        probe = subprocess.run([python, "-c", "import mlflow"], capture_output=True)
    except OSError:  # no such interpreter
        return None
    if probe.returncode != 0:
        return None
    out = subprocess.run([python, "-c", script, *argv], capture_output=True, text=True, check=True)
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def child_env(**extra: str) -> dict[str, str]:
    """This environment for a measured child process, bytecode caching on.

    Some sandboxes set PYTHONDONTWRITEBYTECODE, which makes every start compile
    what it imports anew; installed code runs with its bytecode cached.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra)
    return env


def row(name: str, value: str, target: str, mlflow: str = "-") -> None:
    print(f"{name:<48} {value:>10}   target {target:<14} mlflow {mlflow}", flush=True)


def settle() -> None:
    """Let the disk write back what the previous section wrote.

    On the reference machines a section that follows a write-heavy one (a
    million points, MLflow's SQLite fsyncs) measured up to five times slower
    while the kernel flushed; each section starts from a quiet disk instead.
    """
    os.sync()
    time.sleep(3)
