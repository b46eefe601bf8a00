"""``gitml import mlflow`` throughput: runs per second copied from an MLflow SQLite store.

    python benchmarks/mlflow_import.py [--runs 1000] [--params 10] [--metrics 5] [--steps 100]

MLflow's own SQL store, in process, fills a SQLite store with ``--runs``
finished runs of ``--params`` params and ``--metrics`` metrics of ``--steps``
points each (one ``log_batch`` a run, so filling is not what is measured; its
client over the same store took 1.3 s a run). The filled store is kept under
``--workdir`` by its shape, and later runs of the same shape reuse it. Then
``gitml import mlflow`` copies it into a new repository as one process, timed
whole (MLflow's import included), and again, when there is nothing new. Needs
MLflow in ``--mlflow-python`` (the import runs there too).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ROOT, child_env, parser, work_folder
from testing.git import init_repo

FILL = """
import sys, time
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from sqlalchemy import event

uri, root, runs, params, metrics, steps = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
store = SqlAlchemyStore(uri, root)
# Without an fsync per commit: filling is set-up, not what is measured (the import only reads).
event.listen(store.engine, "connect", lambda db, _: db.execute("PRAGMA synchronous = OFF"))
store.engine.dispose()
exp = store.create_experiment("bench")
now = int(time.time() * 1000)
points = [
    Metric(f"m{k}", float(s) / steps, now + s, s) for k in range(metrics) for s in range(steps)
]
for i in range(runs):
    run = store.create_run(exp, "bench", now + i, [RunTag("team", "bench")], f"run-{i}")
    store.log_batch(
        run.info.run_id, metrics=points, params=[Param(f"p{j}", str(j)) for j in range(params)],
        tags=[],
    )
    store.update_run_info(run.info.run_id, RunStatus.FINISHED, now + steps + i, None)
print("filled")
"""
GITML = "from gitml.cli import main; main()"


def main() -> None:
    parse = parser(__doc__ or "")
    parse.add_argument("--runs", type=int, default=1000)
    parse.add_argument("--params", type=int, default=10)
    parse.add_argument("--metrics", type=int, default=5)
    parse.add_argument("--steps", type=int, default=100)
    args = parse.parse_args()
    base = work_folder(args, "mlflow-import-")
    env = child_env(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true", PYTHONPATH=str(ROOT))
    shape = [str(args.runs), str(args.params), str(args.metrics), str(args.steps)]
    store = args.workdir / f"mlflow-import-{'x'.join(shape)}.db"
    if store.exists():
        print(f"reusing the MLflow store {store}", flush=True)
    else:
        # Filled under another name and renamed whole: an interrupted fill is not reused.
        filling = base / "mlflow.db"
        artifacts = f"{store}-artifacts"  # none are logged; MLflow's store needs a root
        started = time.perf_counter()
        subprocess.run(
            [args.mlflow_python, "-c", FILL, f"sqlite:///{filling}", artifacts, *shape],
            env=env,
            check=True,
            cwd=base,
        )
        filling.replace(store)
        print(f"filled the MLflow store in {time.perf_counter() - started:.1f} s", flush=True)
    uri = f"sqlite:///{store}"
    repo = init_repo(base / "repo")
    points = args.runs * args.metrics * args.steps
    for label in ("first import", "again (nothing new)"):
        started = time.perf_counter()
        done = subprocess.run(
            [args.mlflow_python, "-c", GITML, "import", "mlflow", uri, "--json"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        took = time.perf_counter() - started
        summary = json.loads(done.stdout)
        moved = summary["runs"]["imported"] + summary["runs"]["updated"]
        print(
            f"{label:<22} {args.runs} runs, {points} points: {took:7.1f} s "
            f"= {args.runs / took:7.1f} runs/s ({moved} runs written)",
            flush=True,
        )


if __name__ == "__main__":
    main()
