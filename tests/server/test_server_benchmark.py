"""benchmarks/server.py runs end to end in its quick form and prints its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from testing.procs import child_env

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.mark.slow
def test_server_benchmark_quick_runs(tmp_path: Path) -> None:
    env = child_env(tmp_path)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "server.py"),
            "--quick",
            "--mlflow-python",
            str(tmp_path / "no-such-python"),  # MLflow's figures are not what is tested here
            "--workdir",
            str(tmp_path / "bench"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for name in (
        "log_metric over HTTP",
        "amortized, until the server has them (us/call)",
        "points/s over HTTP, 1 client",
        "points/s over HTTP, 4 clients",
        "search 1,000 runs via REST, filter + order (ms)",
    ):
        assert name in done.stdout
    assert "target <= 50" in done.stdout and "target <= 100" in done.stdout
