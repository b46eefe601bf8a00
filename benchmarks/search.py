"""Search benchmarks: gitml's query index beside MLflow's SQLite store.

    python benchmarks/search.py [--runs 100000] [--mlflow-python PY]

Generates the runs itself (10 params, 5 metrics, 3 tags each, as the reference
figures had): objects through the store's writer, refs written as loose files as
``git fetch`` would, so the index meets them as foreign refs. Prints, for
1,000 and for ``--runs`` runs: a full index rebuild, a filtered search with an
order, returning every run of 1,000 as objects, the refresh after one new run
logged through the API, and ``gitml runs search`` as a whole process over
10,000 runs. MLflow's figures are measured when ``--mlflow-python`` can
import MLflow.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ROOT, mlflow_figures, parser, row, work_folder
from testing.git import init_repo

FILTER = "metrics.m0 < 0.5 and params.p0 = 'v3'"
ORDER_BY = ["metrics.m1 DESC"]


def generate(
    path: Path, count: int, seed: int = 0, *, params: int = 10, metrics: int = 5, tags: int = 3
) -> Path:
    """A repository with ``count`` runs in experiment 0 (``params`` params, ``metrics``
    metrics and ``tags`` tags each), made in bulk."""
    from gitml.format.records import MetricValue, Run
    from gitml.git.store import Store
    from gitml.tracking.client import Client

    init_repo(path)
    os.chdir(path)
    Client().close()  # creates the Default experiment
    store = Store(path)
    rng = random.Random(seed)
    refs = store.ref_dir("refs/gitml/runs")
    refs.mkdir(parents=True, exist_ok=True)
    start = 1_764_000_000_000
    for i in range(count):
        run_id = uuid.UUID(int=rng.getrandbits(128), version=4).hex
        run = Run(
            id=run_id,
            experiment_id="0",
            name=f"run-{i}",
            status="FINISHED",
            start_time=start + i * 1000,
            end_time=start + i * 1000 + 500,
            user="bench",
            params={f"p{j}": f"v{rng.randrange(10)}" for j in range(params)},
            tags={f"t{j}": f"tag {rng.randrange(100)}" for j in range(tags)},
            metrics={
                f"m{j}": MetricValue(value=rng.random(), step=9, timestamp=start + i * 1000 + 400)
                for j in range(metrics)
            },
        )
        commit = store.write_commit(None, {"run.yaml": run.to_yaml()}, (), f"gitml: run {i}")
        (refs / run_id).write_text(commit + "\n")
    store.close()
    return path


def timed(func: Callable[[], object], repeat: int = 5) -> float:
    """Median milliseconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def bench_gitml(path: Path) -> dict[str, float]:
    import gitml
    from gitml.tracking import fluent

    os.chdir(path)
    fluent.set_tracking_uri(None)
    client = gitml.Client()
    client.index.close()
    (client.store.data_dir / "index.sqlite").unlink(missing_ok=True)
    start = time.perf_counter()
    total = client.index.rebuild()
    rebuild_s = time.perf_counter() - start
    out = {
        "runs": float(total),
        "rebuild_s": rebuild_s,
        "filtered_ms": timed(lambda: client.search_runs(None, FILTER, order_by=ORDER_BY)),
        "matches": float(len(client.search_runs(None, FILTER, order_by=ORDER_BY))),
        "all_1000_ms": timed(lambda: client.search_runs(None, "", max_results=1000)),
        "noop_refresh_ms": timed(client.index.refresh),
    }
    new = client.create_run("0", run_name="one more")
    client.set_terminated(new.id)
    start = time.perf_counter()
    changed = client.index.refresh()
    out["refresh_one_ms"] = (time.perf_counter() - start) * 1e3
    assert changed == 1, changed
    client.close()
    return out


def bench_cli(path: Path, repeat: int = 11) -> float:
    exe = shutil.which("gitml", path=str(Path(sys.executable).parent)) or shutil.which("gitml")
    assert exe, "gitml is not installed (pip install -e .)"
    command = [exe, "runs", "search", FILTER, "--order-by", ORDER_BY[0], "--max", "100"]
    # As installed Python code runs: with its bytecode cached (some sandboxes
    # set PYTHONDONTWRITEBYTECODE, which makes every start compile gitml anew).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(command, cwd=path, check=True, capture_output=True, env=env)  # warm up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, cwd=path, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


_MLFLOW = textwrap.dedent(
    """
    import json, random, statistics, sys, time, os
    import mlflow
    from mlflow.entities import Metric, Param, RunTag
    os.chdir(sys.argv[1])
    client = mlflow.MlflowClient("sqlite:///mlflow.db")
    rng = random.Random(0)
    exp = client.create_experiment("bench")
    count = int(sys.argv[2])
    for i in range(count):
        run = client.create_run(exp)
        now = int(time.time() * 1000)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(f"m{j}", rng.random(), now, 9) for j in range(5)],
            params=[Param(f"p{j}", f"v{rng.randrange(10)}") for j in range(10)],
            tags=[RunTag(f"t{j}", f"tag {rng.randrange(100)}") for j in range(3)],
        )
        client.set_terminated(run.info.run_id)
    def timed(f, n=5):
        out = []
        for _ in range(n):
            s = time.perf_counter(); f(); out.append(time.perf_counter() - s)
        return statistics.median(out) * 1e3
    filtered = timed(lambda: client.search_runs([exp], sys.argv[3], order_by=[sys.argv[4]]))
    everything = timed(lambda: client.search_runs([exp], "", max_results=1000))
    print(json.dumps({"filtered_ms": filtered, "all_1000_ms": everything}))
    """
)


def bench_mlflow(python: str, base: Path, count: int) -> dict[str, float] | None:
    work = base / "mlflow"
    work.mkdir()
    return mlflow_figures(python, _MLFLOW, str(work), str(count), FILTER, ORDER_BY[0])


def main() -> None:
    parse = parser(__doc__ or "")
    parse.add_argument("--runs", type=int, default=100_000)
    parse.add_argument("--cli-runs", type=int, default=10_000)
    args = parse.parse_args()
    base = work_folder(args, "search-")

    try:
        mlflow = bench_mlflow(args.mlflow_python, base, 1000)
        ml: Callable[[str], str] = (
            (lambda key: f"{mlflow[key]:.1f}") if mlflow else (lambda key: "n/a")
        )
        sizes = sorted({1000, args.cli_runs, args.runs})
        for size in sizes:
            start = time.perf_counter()
            path = generate(base / f"runs-{size}", size)
            print(f"generated {size:,} runs in {time.perf_counter() - start:.1f} s", flush=True)
            os.sync()
            figures = bench_gitml(path)
            label = f"{size:,} runs"
            row(
                f"{label}: full index rebuild (s)",
                f"{figures['rebuild_s']:.2f}",
                "<= 60" if size >= 100_000 else "-",
            )
            row(
                f"{label}: filtered search + order_by (ms)",
                f"{figures['filtered_ms']:.1f}",
                "<= 10" if size == 1000 else "<= 100" if size >= 100_000 else "-",
                ml("filtered_ms") if size == 1000 else "-",
            )
            row(f"  ({figures['matches']:.0f} matches)", "", "")
            if size == 1000:
                row(
                    f"{label}: all runs as objects (ms)",
                    f"{figures['all_1000_ms']:.1f}",
                    "<= 50",
                    ml("all_1000_ms"),
                )
            row(f"{label}: refresh with nothing new (ms)", f"{figures['noop_refresh_ms']:.2f}", "-")
            row(
                f"{label}: refresh after one new run (ms)",
                f"{figures['refresh_one_ms']:.1f}",
                "<= 50" if size >= 100_000 else "-",
            )
            if size == args.cli_runs:
                row(
                    f"{label}: `gitml runs search` process (ms)", f"{bench_cli(path):.0f}", "<= 400"
                )
    finally:
        os.chdir(ROOT)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
