"""``gitml import mlflow`` throughput: runs per second copied from an MLflow SQLite store.

    python benchmarks/mlflow_import.py [--runs 1000] [--params 10] [--metrics 5] [--steps 100]

MLflow's client fills a SQLite store (``log_batch``, so filling is not what
is measured) with ``--runs`` finished runs of ``--params`` params and
``--metrics`` metrics of ``--steps`` points each; then ``gitml import mlflow``
copies it into a new repository as one process, timed whole (MLflow's import
included), and again, when there is nothing new. Needs MLflow in
``--mlflow-python`` (the import runs there too).
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
import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

uri, runs, params, metrics, steps = sys.argv[1], *map(int, sys.argv[2:])
client = MlflowClient(uri)
exp = client.create_experiment("bench")
now = int(time.time() * 1000)
points = [
    Metric(f"m{k}", float(s) / steps, now + s, s) for k in range(metrics) for s in range(steps)
]
for i in range(runs):
    run = client.create_run(exp, run_name=f"run-{i}")
    client.log_batch(run.info.run_id, params=[Param(f"p{j}", str(j)) for j in range(params)])
    for start in range(0, len(points), 1000):
        client.log_batch(run.info.run_id, metrics=points[start : start + 1000])
    client.set_terminated(run.info.run_id)
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
    uri = f"sqlite:///{base / 'mlflow.db'}"
    env = child_env(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true", PYTHONPATH=str(ROOT))
    shape = [str(args.runs), str(args.params), str(args.metrics), str(args.steps)]
    started = time.perf_counter()
    subprocess.run([args.mlflow_python, "-c", FILL, uri, *shape], env=env, check=True, cwd=base)
    print(f"filled the MLflow store in {time.perf_counter() - started:.1f} s", flush=True)
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
