"""Tracking benchmarks: gitml's figures beside MLflow's on the same work.

    python benchmarks/tracking.py [--points 1000000] [--mlflow-python PY]

Prints, for each target: per-call ``log_metric`` in a 100,000-step
loop (flushes included), creating and finishing a run with 10 params,
5 metrics and 3 tags, 1,000,000 points in one run (repository growth after
``git gc`` against the same points as plain text, first and last flush
times), and the start-up time of ``import gitml`` and ``gitml --version``.
MLflow's figures are measured when MLflow is importable by ``--mlflow-python``
(default: this interpreter), on its default SQLite store.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ROOT, mlflow_figures, parser, row, settle, work_folder
from testing.git import git_env, init_repo


def _fresh_repo(base: Path, name: str) -> Path:
    path = init_repo(base / name)
    os.chdir(path)
    return path


def _client(config: str = "") -> object:
    from gitml.tracking import fluent

    if config:
        Path(".gitml.yaml").write_text(config)
    fluent.set_tracking_uri(None)
    return fluent


def bench_log_metric(base: Path, steps: int) -> float:
    """Microseconds per ``log_metric`` call, amortized over the loop and final commit."""
    _fresh_repo(base, "log-metric")
    import gitml

    _client()
    with gitml.start_run():
        start = time.perf_counter()
        for step in range(steps):
            gitml.log_metric("loss", 1.0 / (step + 1), step=step)
        gitml.end_run()
        elapsed = time.perf_counter() - start
    return elapsed / steps * 1e6


def bench_run_lifecycle(base: Path, runs: int) -> tuple[float, float]:
    """Median milliseconds to create and finish a run with 10 params, 5 metrics, 3 tags.

    Twice: in a new repository (whose ``.git/objects/xx`` folders do not exist
    yet, so early objects also create their folder), and in the same one after
    300 more runs, as in a project that has been tracked for a while.
    """
    _fresh_repo(base, "lifecycle")
    import gitml

    _client()
    params = {f"param_{i}": i for i in range(10)}
    metric_values = {f"metric_{i}": i * 0.5 for i in range(5)}
    tags = {f"tag_{i}": f"value {i}" for i in range(3)}
    gitml.start_run()  # not measured: first-use imports, creating the experiment
    gitml.end_run()

    def median_ms(count: int) -> float:
        times = []
        for _ in range(count):
            start = time.perf_counter()
            gitml.start_run()
            gitml.log_params(params)
            gitml.log_metrics(metric_values)
            gitml.set_tags(tags)
            gitml.end_run()
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1e3

    fresh = median_ms(runs)
    median_ms(300)
    return fresh, median_ms(runs)


def bench_million(base: Path, points: int) -> dict[str, float]:
    """Storage and flush cost of ``points`` points in one run."""
    path = _fresh_repo(base, "million")
    # One commit per 50,000 points, the default; the interval is not what we measure.
    _client("flush_points: 50000\nflush_interval: 3600\n")
    import gitml
    from gitml.tracking import writer

    flush_times: list[float] = []
    flush_cpu: list[float] = []
    original = writer.RunWriter.flush

    def timed(self: writer.RunWriter, edit: writer.RunEdit | None = None) -> None:
        start, cpu = time.perf_counter(), time.process_time()
        original(self, edit)
        flush_times.append(time.perf_counter() - start)
        flush_cpu.append(time.process_time() - cpu)

    writer.RunWriter.flush = timed  # type: ignore[method-assign]
    try:
        before = _repo_size(path)
        text_bytes = 0
        with gitml.start_run():
            stamp = 1_764_000_000_000
            for step in range(points):
                value = 1.0 / (step + 1)
                gitml.log_metric("loss", value, step=step, timestamp=stamp + step)
                text_bytes += len(f"{step}\t{stamp + step}\t{value!r}\n")
    finally:
        writer.RunWriter.flush = original  # type: ignore[method-assign]
    subprocess.run(["git", "gc", "-q", "--prune=now"], cwd=path, check=True, env=git_env(base))
    growth = _repo_size(path) - before
    return {
        "points": points,
        "text_mb": text_bytes / 1e6,
        "growth_mb": growth / 1e6,
        "ratio": growth / text_bytes,
        "first_flush_ms": flush_times[0] * 1e3,
        "last_full_flush_ms": flush_times[-2] * 1e3 if len(flush_times) > 1 else float("nan"),
        # first and second half of the full flushes: a trend, not one noisy pair
        "early_median_ms": _half_median(flush_times, first=True),
        "late_median_ms": _half_median(flush_times, first=False),
        # CPU time (ours and the kernel's) apart from waiting on the disk
        "early_cpu_ms": _half_median(flush_cpu, first=True),
        "late_cpu_ms": _half_median(flush_cpu, first=False),
        "flushes": len(flush_times),
    }


def _half_median(seconds: list[float], *, first: bool) -> float:
    """Median milliseconds of the first or second half of the full flushes (the
    first, on a new repository, and the last, partial one left out)."""
    full = seconds[1:-1]
    half = full[: len(full) // 2] if first else full[len(full) // 2 :]
    return statistics.median(half) * 1e3 if half else float("nan")


def _repo_size(path: Path) -> int:
    git_dir = path / ".git" / "objects"
    return sum(f.stat().st_size for f in git_dir.rglob("*") if f.is_file())


def _wall(command: list[str], repeat: int) -> float:
    # As installed code runs: bytecode cached (some sandboxes disable that).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(command, check=True, capture_output=True, env=env)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def bench_startup(repeat: int) -> dict[str, float]:
    exe = sys.executable
    gitml_cli = shutil.which("gitml", path=str(Path(exe).parent)) or shutil.which("gitml")
    assert gitml_cli, "gitml is not installed (pip install -e .)"
    return {
        "python_ms": _wall([exe, "-c", "pass"], repeat),
        "import_ms": _wall([exe, "-c", "import gitml"], repeat),
        "version_ms": _wall([gitml_cli, "--version"], repeat),
    }


_MLFLOW_SCRIPT = textwrap.dedent(
    """
    import json, statistics, sys, time, os
    t0 = time.perf_counter()
    import mlflow
    import_s = time.perf_counter() - t0
    os.chdir(sys.argv[1])
    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    steps = int(sys.argv[2])
    with mlflow.start_run():
        start = time.perf_counter()
        for step in range(steps):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        per_call = (time.perf_counter() - start) / steps
    params = {f"param_{i}": i for i in range(10)}
    metrics = {f"metric_{i}": i * 0.5 for i in range(5)}
    tags = {f"tag_{i}": f"value {i}" for i in range(3)}
    times = []
    for _ in range(20):
        start = time.perf_counter()
        mlflow.start_run()
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.set_tags(tags)
        mlflow.end_run()
        times.append(time.perf_counter() - start)
    print(json.dumps({"log_metric_us": per_call * 1e6, "lifecycle_ms":
        statistics.median(times) * 1e3, "import_ms": import_s * 1e3}))
    """
)


def bench_mlflow(python: str, base: Path, steps: int) -> dict[str, float] | None:
    work = base / "mlflow"
    work.mkdir()
    return mlflow_figures(python, _MLFLOW_SCRIPT, str(work), str(steps))


def main() -> None:
    parse = parser(__doc__ or "")
    parse.add_argument("--steps", type=int, default=100_000)
    parse.add_argument("--points", type=int, default=1_000_000)
    parse.add_argument("--runs", type=int, default=50)
    parse.add_argument(
        "--mlflow-steps",
        type=int,
        default=2_000,
        help="MLflow's per-call figure is taken over fewer calls (it is slow)",
    )
    args = parse.parse_args()
    base = work_folder(args, "run-")
    try:
        mlflow = bench_mlflow(args.mlflow_python, base, args.mlflow_steps)
        settle()
        ml: Callable[[str, str], str] = (
            (lambda key, fmt: format(mlflow[key], fmt)) if mlflow else (lambda key, fmt: "n/a")
        )
        row(
            f"log_metric, {args.steps:,} steps (us/call)",
            f"{bench_log_metric(base, args.steps):.2f}",
            "<= 20",
            ml("log_metric_us", ".1f"),
        )
        settle()
        fresh, settled = bench_run_lifecycle(base, args.runs)
        row(
            "run, 10 params/5 metrics/3 tags: new repo (ms)",
            f"{fresh:.2f}",
            "<= 4",
            ml("lifecycle_ms", ".1f"),
        )
        row("  the same after 300 runs (ms)", f"{settled:.2f}", "<= 4")
        settle()
        million = bench_million(base, args.points)
        row(f"{args.points:,} points: as text (MB)", f"{million['text_mb']:.1f}", "-")
        row(
            f"{args.points:,} points: repo growth after gc (MB)",
            f"{million['growth_mb']:.1f}",
            "<= 2x text",
        )
        row("  growth / text", f"{million['ratio']:.2f}", "<= 2.0")
        row(
            f"  first flush of {million['flushes']:.0f} (ms)",
            f"{million['first_flush_ms']:.1f}",
            "-",
        )
        row("  last full flush (ms)", f"{million['last_full_flush_ms']:.1f}", "<= first")
        row("  median flush, first half (ms)", f"{million['early_median_ms']:.1f}", "-")
        row("  median flush, second half (ms)", f"{million['late_median_ms']:.1f}", "<= first half")
        row("  CPU per flush, first half (ms)", f"{million['early_cpu_ms']:.1f}", "-")
        row("  CPU per flush, second half (ms)", f"{million['late_cpu_ms']:.1f}", "<= first half")
        settle()
        startup = bench_startup(15)
        row("python -c pass (ms, baseline)", f"{startup['python_ms']:.0f}", "-")
        row(
            "python -c 'import gitml' (ms)",
            f"{startup['import_ms']:.0f}",
            "<= 150",
            ml("import_ms", ".0f") + (" (import only)" if mlflow else ""),
        )
        row("gitml --version (ms)", f"{startup['version_ms']:.0f}", "<= 200")
    finally:
        os.chdir(ROOT)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
