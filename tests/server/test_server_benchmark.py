"""benchmarks/server.py runs end to end in its quick form and prints its table."""

from __future__ import annotations

from pathlib import Path

import pytest

from testing.benchmarks import run_benchmark


@pytest.mark.slow
def test_server_benchmark_quick_runs(tmp_path: Path) -> None:
    out = run_benchmark(
        "server.py",
        tmp_path,
        "--quick",
        "--points",
        "1000",
        "--client-points",
        "200",
        "--runs",
        "200",
        "--mlflow-python",
        str(tmp_path / "no-such-python"),  # MLflow's figures are not what is tested here
    )
    for name in (
        "log_metric over HTTP",
        "amortized, until the server has them (us/call)",
        "points/s over HTTP, 1 client",
        "points/s over HTTP, 4 clients",
        "search 200 runs via REST, filter + order (ms)",
    ):
        assert name in out
    assert "target <= 50" in out and "target <= 100" in out
