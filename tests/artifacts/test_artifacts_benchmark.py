"""benchmarks/artifacts.py runs end to end in a short form and prints every row."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from testing.benchmarks import run_benchmark


@pytest.mark.slow
def test_artifacts_benchmark_prints_each_provider(tmp_path: Path) -> None:
    out = run_benchmark(
        "artifacts.py", tmp_path, "--large-mb", "6", "--small-count", "20", "--repeats", "1"
    )
    for scheme in ("s3", "gs", "az"):
        for what in ("6 MB upload", "6 MB download", "20 x 10 KB upload", "20 x 10 KB download"):
            line = next(x for x in out.splitlines() if x.startswith(f"{scheme}: {what}"))
            assert re.search(r"gitml +[\d,.]+ (MB|files)/s +provider +[\d,.]+ ", line), line
    # Each small-file row is followed by the provider's own pool of threads, the ceiling.
    ceilings = re.findall(r"provider x16 +[\d,]+ files/s = [\d.]+x the loop; gitml at", out)
    assert len(ceilings) == 6, out
