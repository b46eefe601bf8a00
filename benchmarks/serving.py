"""Serving benchmarks: ``gitml models serve`` beside ``mlflow models serve``.

    python benchmarks/serving.py [--seconds 10] [--mlflow-python PY] [--threadpool]

A scikit-learn LogisticRegression on iris is saved as a model directory and
served by one worker on 127.0.0.1. A bounded load generator (4 client threads,
keep-alive ``http.client`` connections, a fixed duration) sends one-row JSON
requests and reports requests/s, p50 and p99; then the latency of one
1,000-row request (median of 50), and the start-up time until ``/ping``
answers (the median of ``--starts`` starts, after one unmeasured start that
warms the bytecode caches). MLflow's figures are measured the same way when
``--mlflow-python`` can import MLflow (``mlflow models serve --env-manager
local --workers 1``, the model saved by that MLflow); otherwise the reference
machine's figures are shown.

Children run without PYTHONDONTWRITEBYTECODE (as installed code runs), gitml's
with this checkout first on PYTHONPATH, MLflow's with its interpreter's
``bin`` first on PATH: ``mlflow models serve`` execs ``uvicorn`` by name.
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

from benchmarks.common import ROOT, child_env, parser, row, work_folder

CLIENTS = 4
# `mlflow models serve` measured on the reference machine.
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
from gitml.serving.scoring_app import create_app, load_model
app = create_app(load_model(sys.argv[1]), offload_above_bytes=0)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), access_log=False, log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerFailed(RuntimeError):
    """The server exited or never answered; the message ends with its stderr."""


def wait_for_ping(
    port: int, proc: subprocess.Popen[bytes], timeout: float = 120, start: float | None = None
) -> float:
    """Seconds from ``start`` (default: now) until GET /ping answers 200."""
    start = time.perf_counter() if start is None else start
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise ServerFailed(f"the server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                return time.perf_counter() - start
        except OSError:
            pass
        time.sleep(0.005)
    raise ServerFailed(f"the server did not answer /ping within {timeout:g} s")


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


def load(
    port: int, body: bytes, seconds: float, completions: list[float] | None = None
) -> dict[str, float]:
    """CLIENTS threads posting ``body`` back to back for ``seconds``; stops by itself.

    ``completions``, when given, receives the ``perf_counter()`` of every answer.
    """
    latencies: list[list[float]] = [[] for _ in range(CLIENTS)]
    deadline = time.perf_counter() + seconds

    def client(mine: list[float]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.perf_counter() < deadline:
            mine.append(post(conn, body))
            if completions is not None:
                completions.append(time.perf_counter())
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


def tree_cpu(root: int) -> float | None:
    """CPU seconds (user + system) used so far by ``root`` and its descendants.

    Less at the mercy of other load on the machine than the wall-clock start-up:
    MLflow's server is a grandchild (``mlflow`` runs ``exec uvicorn``), hence
    the tree. None where there is no ``/proc``.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    stats: dict[int, tuple[int, float]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        ticks = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        stats[int(entry.name)] = (int(fields[1]), ticks / os.sysconf("SC_CLK_TCK"))
    tree, total = {root}, 0.0
    for _ in range(8):  # a few generations deep is plenty
        tree |= {pid for pid, (ppid, _) in stats.items() if ppid in tree}
    for pid in tree:
        total += stats.get(pid, (0, 0.0))[1]
    return total


class Server:
    """One server process on ``port``; its stderr goes to a file (a pipe nobody
    reads would stall a server that logs every request)."""

    def __init__(self, command: list[str], port: int, env: dict[str, str], log: Path) -> None:
        self.port = port
        self.log = log
        with open(log, "wb") as err:
            self.started = time.perf_counter()
            self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=env)

    def ready(self) -> tuple[float, float | None]:
        """Seconds from the process start until /ping answered, and the CPU seconds used."""
        try:
            seconds = wait_for_ping(self.port, self.proc, start=self.started)
            return seconds, tree_cpu(self.proc.pid)
        except ServerFailed as exc:
            self.stop()
            tail = self.log.read_text(errors="replace").strip().splitlines()[-30:]
            raise ServerFailed(f"{exc}; its stderr ({self.log}):\n" + "\n".join(tail)) from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def measure(
    command: list[str], env: dict[str, str], args: argparse.Namespace, name: str
) -> dict[str, float]:
    """Start-up (median of --starts, after a warm-up start), then the load on the last start."""
    one_row, thousand = bodies()
    starts: list[float] = []
    cpu: list[float] = []
    for attempt in range(args.starts + 1):
        port = free_port()
        server = Server(
            [part.replace("{port}", str(port)) for part in command],
            port,
            env,
            Path.cwd() / f"{name}-{attempt}.stderr",
        )
        last = attempt == args.starts
        try:
            seconds, used = server.ready()
            if attempt:  # the first start warms the bytecode caches
                starts.append(seconds)
                if used is not None:
                    cpu.append(used)
            if not last:
                continue
            figures = {"startup": statistics.median(starts), "startup_min": min(starts)}
            if cpu:
                figures["startup_cpu"] = statistics.median(cpu)
            post(http.client.HTTPConnection("127.0.0.1", port), one_row)  # first-call warm-up
            figures.update(load(port, one_row, args.seconds))
            figures["rows1000"] = one_big_request(port, thousand)
            return figures
        finally:
            server.stop()
    raise AssertionError("unreachable")


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
        "--starts",
        type=int,
        default=3,
        help="measured starts per server (the median is shown), after one warm-up start",
    )
    parse.add_argument(
        "--threadpool",
        action="store_true",
        help="also measure with every predict in the threadpool",
    )
    args = parse.parse_args()
    args.starts = max(1, args.starts)
    base = work_folder(args, "serving-")
    os.chdir(base)

    gitml_env = child_env(
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    model = base / "gitml-model"
    save = SAVE_SKLEARN.format(save="__import__('gitml.models.sklearn').models.sklearn.save_model")
    subprocess.run([sys.executable, "-c", save, str(model)], check=True, env=gitml_env)
    gitml_exe = str(Path(sys.executable).with_name("gitml"))
    command = [gitml_exe, "models", "serve", "-m", str(model), "--port", "{port}"]
    gitml = measure(command, gitml_env, args, "gitml")
    threadpool = None
    if args.threadpool:
        command = [sys.executable, "-c", textwrap.dedent(THREADPOOL_SERVER), str(model), "{port}"]
        threadpool = measure(command, gitml_env, args, "threadpool")

    mlflow: dict[str, float] = MLFLOW_REFERENCE
    source = "the reference machine's"
    if can_import(args.mlflow_python, "mlflow"):
        python = Path(args.mlflow_python)
        mlflow_env = child_env(
            # `mlflow models serve` execs `uvicorn` by name: its own, not another Python's.
            PATH=os.pathsep.join([str(python.parent), os.environ.get("PATH", "")]),
            MLFLOW_TRACKING_URI=(base / "mlruns").as_uri(),
        )
        mlflow_env.pop("PYTHONPATH", None)
        mlflow_model = base / "mlflow-model"
        save = SAVE_SKLEARN.format(save="__import__('mlflow.sklearn').sklearn.save_model")
        subprocess.run([str(python), "-c", save, str(mlflow_model)], check=True, env=mlflow_env)
        command = [
            str(python), "-m", "mlflow", "models", "serve", "-m", str(mlflow_model),
            "--host", "127.0.0.1", "--port", "{port}", "--env-manager", "local", "--workers", "1",
        ]  # fmt: skip
        try:
            mlflow = measure(command, mlflow_env, args, "mlflow")
            source = f"measured ({python})"
        except ServerFailed as exc:
            print(f"mlflow models serve failed: {exc}", flush=True)
            source = "the reference machine's (mlflow models serve failed; see above)"

    load1, load5, _ = os.getloadavg()
    busy = f"load average {load1:.1f} (1 min), {load5:.1f} (5 min) on {os.cpu_count()} CPUs"
    print(f"\n1 worker, {CLIENTS} client threads, {args.seconds:g} s, one-row JSON; start-up: "
          f"median of {args.starts}; mlflow figures: {source}; {busy}")  # fmt: skip
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
        ("start-up, fastest of the starts s", "startup_min", "{:.2f}", "-"),
        ("start-up CPU (user+system) s", "startup_cpu", "{:.2f}", "-"),
    ]
    for name, key, form, target in lines:
        if key not in ours:
            continue
        theirs = form.format(mlflow[key]) if key in mlflow else "-"
        row(name + label, form.format(ours[key]), target, theirs)


if __name__ == "__main__":
    main()
