"""benchmarks/reconcile.py runs end to end in its quick form and prints its table."""

from __future__ import annotations

from pathlib import Path

import pytest

from testing.benchmarks import run_benchmark


@pytest.mark.slow
def test_reconcile_benchmark_quick_runs(tmp_path: Path) -> None:
    out = run_benchmark("reconcile.py", tmp_path, "--quick", "--promotions", "2", timeout=240)
    for name in (
        "promotion latency p95 s",
        "requests/s, reconcile vs models serve %",
        "swap: dip, worst swap %",
        "fault: stall until /status says so s",
        "fault: remote back until promotion answers s",
        "fault: restart: answered after start-up %",
    ):
        assert name in out
    assert "target <= 2" in out
