"""Serving benchmarks: ``gitml models serve`` beside ``mlflow models serve``.

    python benchmarks/serving.py [--seconds 10] [--mlflow-python PY] [--threadpool]

A scikit-learn LogisticRegression on iris is saved as a model directory and
served by one worker on 127.0.0.1. A bounded load generator (4 client threads,
keep-alive ``http.client`` connections, a fixed duration) sends one-row JSON
requests and reports requests/s, p50 and p99; then the latency of one
1,000-row request (median of 50), and the start-up time until ``/ping``
answers. MLflow's figures are measured when ``--mlflow-python`` can import
MLflow; otherwise issue 4's reference figures are shown.
"""

from __future__ import annotations

import argparse
import http.client
import importlib
import json
import os
import socket
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import parser, row, work_folder

CLIENTS = 4
# Issue 4's figures for `mlflow models serve` on the reference machine.
MLFLOW_REFERENCE = {"rps": 448.0, "p50": 8.5, "p99": 15.6, "rows1000": 3.3, "startup": 4.1}

SAVE_SKLEARN = """
import sys
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
iris = load_iris(as_frame=True)
model = LogisticRegression(max_iter=500).fit(iris.data, iris.target)
{save}(model, sys.argv[1], input_example=iris.data.head(3))
"""

THREADPOOL_SERVER = """
import sys, uvicorn
from gitml.server.scoring_app import create_app, load_model
app = create_app(load_model(sys.argv[1]), offload_above_bytes=0)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), access_log=False, log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_ping(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> float:
    """Seconds from now until GET /ping answers 200."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                return time.perf_counter() - start
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError("the server did not answer /ping")


def post(conn: http.client.HTTPConnection, body: bytes) -> float:
    """Milliseconds for one POST /invocations on a kept-alive connection."""
    start = time.perf_counter()
    conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    payload = response.read()
    elapsed = (time.perf_counter() - start) * 1000
    if response.status != 200:
        raise RuntimeError(f"status {response.status}: {payload[:200]!r}")
    return elapsed


def load(port: int, body: bytes, seconds: float) -> dict[str, float]:
    """CLIENTS threads posting ``body`` back to back for ``seconds``; stops by itself."""
    latencies: list[list[float]] = [[] for _ in range(CLIENTS)]
    deadline = time.perf_counter() + seconds

    def client(mine: list[float]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.perf_counter() < deadline:
            mine.append(post(conn, body))
        conn.close()

    threads = [threading.Thread(target=client, args=(mine,)) for mine in latencies]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    every = sorted(x for mine in latencies for x in mine)
    return {
        "rps": len(every) / elapsed,
        "p50": every[len(every) // 2],
        "p99": every[min(len(every) - 1, int(len(every) * 0.99))],
    }


def one_big_request(port: int, body: bytes, times: int = 50) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    post(conn, body)  # warm up
    return statistics.median(post(conn, body) for _ in range(times))


def bodies() -> tuple[bytes, bytes]:
    # By name: scikit-learn ships no type information.
    datasets = importlib.import_module("sklearn.datasets")
    frame = datasets.load_iris(as_frame=True).data
    columns = list(frame.columns)
    values = frame.to_numpy().tolist()

    def split(rows: list[list[float]]) -> bytes:
        return json.dumps({"dataframe_split": {"columns": columns, "data": rows}}).encode()

    big = (values * 7)[:1000]
    return split(values[:1]), split(big)


def measure(command: list[str], port: int, args: argparse.Namespace) -> dict[str, float]:
    one_row, thousand = bodies()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        figures = {"startup": wait_for_ping(port, proc)}
        post(http.client.HTTPConnection("127.0.0.1", port), one_row)  # first-call warm-up
        figures.update(load(port, one_row, args.seconds))
        figures["rows1000"] = one_big_request(port, thousand)
        return figures
    finally:
        proc.terminate()
        proc.wait(10)


def can_import(python: str, module: str) -> bool:
    try:
        return (
            subprocess.run([python, "-c", f"import {module}"], capture_output=True).returncode == 0
        )
    except OSError:
        return False


def main() -> None:
    parse = parser(__doc__ or "")
    parse.add_argument("--seconds", type=float, default=10.0, help="load duration")
    parse.add_argument(
        "--threadpool",
        action="store_true",
        help="also measure with every predict in the threadpool",
    )
    args = parse.parse_args()
    base = work_folder(args, "serving-")
    os.chdir(base)

    model = base / "gitml-model"
    save = SAVE_SKLEARN.format(save="__import__('gitml.models.sklearn').models.sklearn.save_model")
    subprocess.run([sys.executable, "-c", save, str(model)], check=True)
    gitml_exe = str(Path(sys.executable).with_name("gitml"))
    port = free_port()
    gitml = measure(
        [gitml_exe, "models", "serve", "-m", str(model), "--port", str(port)], port, args
    )
    threadpool = None
    if args.threadpool:
        port = free_port()
        command = [sys.executable, "-c", textwrap.dedent(THREADPOOL_SERVER), str(model), str(port)]
        threadpool = measure(command, port, args)

    mlflow: dict[str, float] = MLFLOW_REFERENCE
    source = "issue 4's reference"
    if can_import(args.mlflow_python, "mlflow"):
        mlflow_model = base / "mlflow-model"
        save = SAVE_SKLEARN.format(save="__import__('mlflow.sklearn').sklearn.save_model")
        subprocess.run([args.mlflow_python, "-c", save, str(mlflow_model)], check=True)
        port = free_port()
        command = [
            args.mlflow_python, "-m", "mlflow", "models", "serve", "-m", str(mlflow_model),
            "--port", str(port), "--env-manager", "local", "--workers", "1",
        ]  # fmt: skip
        mlflow = measure(command, port, args)
        source = "measured"

    print(f"\n1 worker, {CLIENTS} client threads, {args.seconds:g} s, one-row JSON; "
          f"mlflow figures: {source}")  # fmt: skip
    show(gitml, mlflow, "")
    if threadpool is not None:
        show(threadpool, mlflow, " (every predict in threadpool)")


def show(ours: dict[str, Any], mlflow: dict[str, float], label: str) -> None:
    lines = [
        ("requests/s", "rps", "{:.0f}", f">= {2 * mlflow['rps']:.0f}"),
        ("p50 ms", "p50", "{:.2f}", "-"),
        ("p99 ms", "p99", "{:.2f}", f"<= {mlflow['p99'] / 2:.2f}"),
        ("1,000-row request ms", "rows1000", "{:.2f}", f"<= {mlflow['rows1000']:.2f}"),
        ("start-up until /ping s", "startup", "{:.2f}", "< 1.5"),
    ]
    for name, key, form, target in lines:
        row(name + label, form.format(ours[key]), target, form.format(mlflow[key]))


if __name__ == "__main__":
    main()
