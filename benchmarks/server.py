"""Tracking-server benchmarks: logging and search over HTTP, beside MLflow's REST client.

    python benchmarks/server.py [--points 100000] [--clients 16] [--runs 10000]
                                [--quick] [--mlflow-python PY]

Prints, for each target, against a real ``gitml server`` process on
127.0.0.1: ``log_metric`` with a remote tracking URI, in microseconds a call
(the loop alone, and amortized over the loop and the final ``flush`` that
waits until the server has committed every point), the points per second one
client gets through, the points per second 16 client processes get through
together, and a filtered, ordered search over 10,000 runs through
``POST /api/v1/runs/search`` (and a page of 1,000 runs). MLflow's figures
are measured when ``--mlflow-python`` has the full MLflow (its tracking
server needs Flask and SQLAlchemy, which mlflow-skinny lacks): ``mlflow
server`` on SQLite, ``MlflowClient.log_metric`` per call, and ``log_batch``
of 1,000 points.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ROOT, child_env, parser, row, settle, work_folder
from benchmarks.search import FILTER, ORDER_BY, generate, timed
from testing.git import init_repo
from testing.procs import finish, read_until, spawn
from testing.tracking_server import TrackingServer


def bench_one_client(base: Path, points: int) -> dict[str, float]:
    """One client in this process: per-call cost, amortized cost, points per second."""
    import gitml

    repo = init_repo(base / "one-client")
    server = TrackingServer(repo, env=child_env())
    server.start()
    try:
        client = gitml.Client(server.url)
        run = client.create_run(run_name="one client")
        client.log_metric(run.id, "warm", 0.0)  # first-use costs: the journal, connections
        client.flush()
        start = time.perf_counter()
        for step in range(points):
            client.log_metric(run.id, "loss", 1.0 / (step + 1), step=step)
        loop = time.perf_counter() - start
        client.flush()
        total = time.perf_counter() - start
        assert len(client.get_metric_history(run.id, "loss")) == points
        client.close()
    finally:
        server.stop()
    return {
        "loop_us": loop / points * 1e6,
        "amortized_us": total / points * 1e6,
        "points_per_s": points / total,
    }


_CLIENT = """
import os, sys, time, gitml
client = gitml.Client()
run = client.create_run(run_name="client " + sys.argv[1])
client.log_metric(run.id, "warm", 0.0)
client.flush()
print("READY", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.001)
points = int(sys.argv[3])
for step in range(points):
    client.log_metric(run.id, "loss", 1.0 / (step + 1), step=step)
client.flush()
print(run.id, flush=True)
"""


def bench_many_clients(base: Path, clients: int, points: int) -> dict[str, float]:
    """``clients`` processes log ``points`` each at once: points per second, all of them."""
    import gitml

    repo = init_repo(base / "many-clients")
    server = TrackingServer(repo, env=child_env())
    server.start()
    go = base / "go"
    env = child_env(GITML_TRACKING_URI=server.url)
    children = [spawn(_CLIENT, base, str(n), str(go), str(points), env=env) for n in range(clients)]
    try:
        for child in children:
            read_until(child, timeout=120)
        start = time.perf_counter()
        go.touch()
        run_ids = []
        for child in children:
            code, out, err = finish(child, timeout=600)
            assert code == 0, err
            run_ids.append(out.strip().splitlines()[-1])
        wall = time.perf_counter() - start
        check = gitml.Client(server.url)
        for run_id in run_ids:
            assert len(check.get_metric_history(run_id, "loss")) == points
        check.close()
    finally:
        for child in children:
            child.kill()
        server.stop()
    return {"points_per_s": clients * points / wall, "wall_s": wall}


def bench_search(base: Path, runs: int) -> dict[str, float]:
    """Median milliseconds of searches over ``runs`` runs through the REST API."""
    import httpx2

    path = generate(base / f"runs-{runs}", runs)
    os.chdir(ROOT)
    server = TrackingServer(path, env=child_env())
    server.start()
    try:
        with httpx2.Client(base_url=server.url + "/api/v1", timeout=120) as http:

            def search(body: Mapping[str, object]) -> int:
                answer = http.post("/runs/search", json=body)
                assert answer.status_code == 200, answer.text
                return len(answer.json()["runs"])

            filtered = {"filter": FILTER, "order_by": ORDER_BY}
            matches = search(filtered)  # builds the server's index: not measured
            search({"max_results": 1000})
            return {
                "filtered_ms": timed(lambda: search(filtered), repeat=11),
                "matches": float(matches),
                "page_1000_ms": timed(lambda: search({"max_results": 1000}), repeat=11),
            }
    finally:
        server.stop()


_MLFLOW = textwrap.dedent(
    """
    import json, os, socket, subprocess, sys, time, urllib.request
    import mlflow
    from mlflow.entities import Metric
    work, calls, batches = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sock = socket.socket(); sock.bind(("127.0.0.1", 0)); port = sock.getsockname()[1]; sock.close()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{work}/mlflow.db",
         "--default-artifact-root", f"{work}/artifacts", "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        client = mlflow.MlflowClient(url)
        run = client.create_run(client.create_experiment("bench")).info.run_id
        client.log_metric(run, "warm", 0.0)
        start = time.perf_counter()
        for step in range(calls):
            client.log_metric(run, "loss", 1.0 / (step + 1), step=step)
        per_call = (time.perf_counter() - start) / calls
        now = int(time.time() * 1000)
        start = time.perf_counter()
        for b in range(batches):
            client.log_batch(run, metrics=[Metric("batched", 0.5, now, b * 1000 + i)
                                           for i in range(1000)])
        batch_rate = batches * 1000 / (time.perf_counter() - start)
        print(json.dumps({"log_metric_us": per_call * 1e6, "batch_points_per_s": batch_rate}))
    finally:
        server.terminate()
        server.wait(30)
    """
)


def bench_mlflow(python: str, base: Path, calls: int, batches: int) -> dict[str, float] | None:
    """MLflow's REST figures, or None when ``python`` lacks MLflow's tracking server."""
    import json

    try:
        probe = subprocess.run(
            [python, "-c", "import mlflow, flask, sqlalchemy"], capture_output=True, check=False
        )
    except OSError:
        return None
    if probe.returncode != 0:
        return None
    work = base / "mlflow"
    work.mkdir()
    out = subprocess.run(
        [python, "-c", _MLFLOW, str(work), str(calls), str(batches)],
        capture_output=True,
        text=True,
        check=True,
        env=child_env(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true"),
    )
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    parse = parser(__doc__ or "")
    parse.add_argument("--points", type=int, default=100_000, help="points logged by one client")
    parse.add_argument("--clients", type=int, default=16)
    parse.add_argument("--client-points", type=int, default=20_000, help="points per client")
    parse.add_argument("--runs", type=int, default=10_000, help="runs searched")
    parse.add_argument("--mlflow-calls", type=int, default=1_000)
    parse.add_argument(
        "--quick",
        action="store_true",
        help="small sizes (smaller ones given stay) and no settling, for the smoke test",
    )
    args = parse.parse_args()
    if args.quick:
        args.points, args.clients = min(args.points, 5_000), min(args.clients, 4)
        args.client_points, args.runs = min(args.client_points, 1_000), min(args.runs, 1_000)
        args.mlflow_calls = min(args.mlflow_calls, 100)
    base = work_folder(args, "server-")
    try:
        mlflow = bench_mlflow(args.mlflow_python, base, args.mlflow_calls, 20)
        ml: Callable[[str, str], str] = (
            (lambda key, fmt: format(mlflow[key], fmt)) if mlflow else (lambda key, fmt: "n/a")
        )
        one = bench_one_client(base, args.points)
        row(
            f"log_metric over HTTP, {args.points:,} calls (us/call)",
            f"{one['loop_us']:.1f}",
            "-",
            ml("log_metric_us", ".0f") + (" (a round trip each)" if mlflow else ""),
        )
        row(
            "  amortized, until the server has them (us/call)",
            f"{one['amortized_us']:.1f}",
            "<= 50",
        )
        row(
            "points/s over HTTP, 1 client",
            f"{one['points_per_s']:,.0f}",
            "-",
            ml("batch_points_per_s", ",.0f") + (" (log_batch of 1,000)" if mlflow else ""),
        )
        if not args.quick:  # its figures are compared with nothing: no wait for the disk
            settle()
        many = bench_many_clients(base, args.clients, args.client_points)
        row(
            f"points/s over HTTP, {args.clients} clients x {args.client_points:,}",
            f"{many['points_per_s']:,.0f}",
            "-",
        )
        if not args.quick:  # its figures are compared with nothing: no wait for the disk
            settle()
        found = bench_search(base, args.runs)
        row(
            f"search {args.runs:,} runs via REST, filter + order (ms)",
            f"{found['filtered_ms']:.1f}",
            "<= 100",
        )
        row(f"  ({found['matches']:.0f} matches)", "", "")
        row(
            f"search {args.runs:,} runs via REST, a page of 1,000 (ms)",
            f"{found['page_1000_ms']:.1f}",
            "-",
        )
    finally:
        os.chdir(ROOT)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
