"""Running a benchmark script end to end, as its smoke test does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .procs import child_env

ROOT = Path(__file__).resolve().parent.parent


def run_benchmark(script: str, tmp_path: Path, *args: str, timeout: float = 280) -> str:
    """``python benchmarks/<script> ARGS --workdir <tmp>``; asserts success, returns its stdout."""
    env = child_env(tmp_path)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as the benchmarks run for real
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / script),
            *args,
            "--workdir",
            str(tmp_path / "bench"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout
