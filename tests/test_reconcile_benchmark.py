"""benchmarks/reconcile.py runs end to end in its quick form and prints its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from testing.procs import child_env

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_reconcile_benchmark_quick_runs(tmp_path: Path) -> None:
    env = child_env(tmp_path)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "reconcile.py"),
            "--quick",
            "--promotions",
            "2",
            "--workdir",
            str(tmp_path / "bench"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for name in (
        "promotion latency p95 s",
        "requests/s, reconcile vs models serve %",
        "swap: dip, worst swap %",
    ):
        assert name in done.stdout
    assert "target <= 2" in done.stdout
