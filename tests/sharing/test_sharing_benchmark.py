"""benchmarks/sharing.py runs end to end in a short form and prints every row."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from testing.benchmarks import run_benchmark


@pytest.mark.slow
def test_sharing_benchmark_prints_each_figure_beside_git(tmp_path: Path) -> None:
    out = run_benchmark(
        "sharing.py",
        tmp_path,
        *("--runs", "30", "--shapes", "sweep,wide", "--repeat", "2"),
        *("--storage-runs", "3", "--mlflow-python", str(tmp_path / "no-python")),
    )
    for shape in ("sweep", "wide"):
        for what in (
            "first push",
            "push with nothing new",
            "first pull (fresh clone)",
            "pull with nothing new",
        ):
            line = next(x for x in out.splitlines() if x.startswith(f"30 runs ({shape}): {what}"))
            medians = re.search(r"gitml +([\d.]+) s +git +([\d.]+) s +[\d.]+x \(target", line)
            assert medians is not None, line
            # Two measurements each: the range of each side's, around its median.
            found = re.search(r"range: gitml ([\d.]+)-([\d.]+) s, git ([\d.]+)-([\d.]+) s$", line)
            assert found is not None, line
            low, high, git_low, git_high = map(float, found.groups())
            mine, theirs = map(float, medians.groups())
            assert low <= mine <= high and git_low <= theirs <= git_high, line
        listed = rf"30 runs \({shape}\): first 'gitml runs list' after the pull +[\d.]+ s"
        assert re.search(listed, out), out
    for shape in ("one param", "10 params, 5 metrics x 100 steps, 3 tags"):
        for api in ("Client", "start_run"):
            made = rf"storage, {shape}, 3 runs by {api}: gitml [\d,]+ B/run \(objects [\d,]+, "
            assert re.search(made, out), out
    assert out.count("MLflow: not importable") == 4
