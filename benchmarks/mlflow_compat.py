"""MLflow's client against ``gitml server`` and against ``mlflow server`` on SQLite.

    python benchmarks/mlflow_compat.py [--batches 20] [--points 1000] [--skip-workload] [--routes]

Both servers run on 127.0.0.1 in the same run. Prints:

- the MLflow-client workload of the tests (``testing/mlflow_workload.py``:
  fluent and nested runs, log_batch, artifacts, scikit-learn autolog,
  log_model with a registered name, aliases, loading by alias, searches,
  deletes, tags, errors), end to end in seconds, timed inside the client
  process after its imports, after one warm-up run;
- beside it, the time the client waited on each server (its HTTP requests
  open, measured in the client: the servers' handlers plus loopback), their
  ratio, and the client's floor: the workload's time not spent waiting,
  work that no server can take away, which bounds the end-to-end ratio;
  ``--routes`` adds each route's requests and seconds on both servers;
- ``--batches`` x ``log_batch`` of ``--points`` metric points through
  ``MlflowClient``, in points per second.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import parser, row, settle, work_folder
from testing.git import init_repo
from testing.mlflow_server import mlflow_env, mlflow_server
from testing.mlflow_workload import run_workload, timed_workload
from testing.tracking_server import TrackingServer

STAGES = "stages: [staging, production, archived, champion]\n"
LOG_BATCH = """
import json, sys, time
from mlflow import MlflowClient
from mlflow.entities import Metric

batches, points = int(sys.argv[1]), int(sys.argv[2])
client = MlflowClient()
experiment = client.create_experiment("log-batch")
run = client.create_run(experiment)
client.log_batch(run.info.run_id, metrics=[Metric("warm", 0.0, 0, 0)])
now = int(time.time() * 1000)
started = time.perf_counter()
for b in range(batches):
    client.log_batch(
        run.info.run_id,
        metrics=[Metric("loss", 1.0 / (i + 1), now + i, b * points + i) for i in range(points)],
    )
seconds = time.perf_counter() - started
assert len(client.get_metric_history(run.info.run_id, "loss")) == batches * points
print(json.dumps({"seconds": seconds, "points_per_s": batches * points / seconds}))
"""


def log_batch(url: str, home: Path, batches: int, points: int) -> dict[str, float]:
    env = mlflow_env(home, MLFLOW_TRACKING_URI=url)
    done = subprocess.run(
        [sys.executable, "-c", LOG_BATCH, str(batches), str(points)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def workload_rows(
    ours: float, our_waits: dict[str, Any], theirs: float, their_waits: dict[str, Any]
) -> None:
    """End to end, server side, and the bound the client's own work puts on the ratio."""
    row(
        "MLflow-client workload, end to end (s)",
        f"{ours:.2f}",
        "2x faster",
        f"{theirs:.2f} ({theirs / ours:.2f}x)",
    )
    ours_waiting, theirs_waiting = our_waits["waiting"], their_waits["waiting"]
    requests = sum(int(n) for n, _ in our_waits["routes"].values())
    their_requests = sum(int(n) for n, _ in their_waits["routes"].values())
    row(
        f"  waiting on the server (s; {requests} vs {their_requests} requests)",
        f"{ours_waiting:.2f}",
        "-",
        f"{theirs_waiting:.2f} ({theirs_waiting / ours_waiting:.2f}x)",
    )
    floor = ours - ours_waiting
    row(
        "  client floor: not waiting (s)",
        f"{floor:.2f}",
        "-",
        f"{theirs - theirs_waiting:.2f}",
    )
    print(
        f"  end to end {theirs / ours:.2f}x; server side {theirs_waiting / ours_waiting:.2f}x; "
        f"the client floor is {floor:.2f} s, so end to end cannot exceed "
        f"{theirs / floor:.2f}x",
        flush=True,
    )


def route_rows(ours: dict[str, list[float]], theirs: dict[str, list[float]]) -> None:
    """Each route's requests and seconds on both servers, the most costly on MLflow first."""
    print(f"  {'route':<62} {'gitml n':>7} {'s':>7}   {'mlflow n':>8} {'s':>7}")
    for route in sorted(
        ours.keys() | theirs.keys(),
        key=lambda r: -max(theirs.get(r, [0, 0.0])[1], ours.get(r, [0, 0.0])[1]),
    ):
        n, seconds = ours.get(route, [0, 0.0])
        m, their_seconds = theirs.get(route, [0, 0.0])
        print(f"  {route:<62} {int(n):>7} {seconds:>7.3f}   {int(m):>8} {their_seconds:>7.3f}")


def main() -> None:
    parse = parser(__doc__ or "")
    parse.add_argument("--batches", type=int, default=20)
    parse.add_argument("--points", type=int, default=1000)
    parse.add_argument("--skip-workload", action="store_true")
    parse.add_argument("--routes", action="store_true", help="time each route on both servers")
    args = parse.parse_args()
    base = work_folder(args, "mlflow-compat-")
    repo = init_repo(base / "repo")
    # The workload sets the alias "champion": a stage this project lists.
    (repo / ".gitml.yaml").write_text(STAGES)
    gitml_server = TrackingServer(repo, env=mlflow_env(base / "gitml-home"))
    gitml_server.start()
    try:
        with mlflow_server(base / "mlflow", timeout=600) as mlflow_url:
            settle()
            if not args.skip_workload:
                # Once through gitml: in process first, so that neither measured run pays
                # for reading MLflow's and scikit-learn's modules from a cold disk.
                warm = init_repo(base / "warm-up")
                (warm / ".gitml.yaml").write_text(STAGES)
                run_workload(warm, mlflow_env(base / "w0", MLFLOW_TRACKING_URI="gitml:."))
                settle()
                ours, our_waits = timed_workload(
                    base, mlflow_env(base / "w1", MLFLOW_TRACKING_URI=gitml_server.url)
                )
                settle()
                theirs, their_waits = timed_workload(
                    base, mlflow_env(base / "w2", MLFLOW_TRACKING_URI=mlflow_url)
                )
                assert {k: v for k, v in ours.items() if k != "seconds"} == {
                    k: v for k, v in theirs.items() if k != "seconds"
                }, "the two servers answered the workload differently"
                workload_rows(ours["seconds"], our_waits, theirs["seconds"], their_waits)
                if args.routes:
                    route_rows(our_waits["routes"], their_waits["routes"])
                settle()
            ours_batch = log_batch(gitml_server.url, base / "b1", args.batches, args.points)
            settle()
            theirs_batch = log_batch(mlflow_url, base / "b2", args.batches, args.points)
            ratio = ours_batch["points_per_s"] / theirs_batch["points_per_s"]
            row(
                f"{args.batches} x log_batch({args.points}) points/s",
                f"{ours_batch['points_per_s']:,.0f}",
                "3x mlflow",
                f"{theirs_batch['points_per_s']:,.0f} ({ratio:.2f}x)",
            )
    finally:
        gitml_server.stop()


if __name__ == "__main__":
    main()
