"""Reconciler benchmarks: promotion latency, throughput, and the dip during a swap.

    python benchmarks/reconcile.py [--promotions 20] [--seconds 10] [--swaps 3] [--quick]

A bare remote and a work repository are made in the work folder: a run
logging a scikit-learn LogisticRegression on iris, registered as model
``iris`` once per promotion (the versions share the run's files; the answers
tell them apart by ``X-Gitml-Model-Version``), and stage ``production``
declaring version 1, pushed with plain ``git push``. ``gitml reconcile
--remote <bare> --interval 1s`` follows it, after one unmeasured start that
warms the bytecode caches (children run without PYTHONDONTWRITEBYTECODE).

- Promotion latency: the next version is assigned in the work repository and
  pushed at a random point of the reconciler's 1 s cycle; from the push's
  return, one client posts one-row requests back to back until 10 answers in
  a row, over at least 200 ms, come from the new version. The latency is the
  first of those answers minus the push's return.
- Throughput: benchmarks/serving.py's load (4 client threads, keep-alive,
  one-row JSON) against ``gitml models serve -m models:/iris/1`` and the
  reconciler's ``/invocations``, in alternating rounds, both servers up; also
  each server's CPU time per request (from /proc, git children included),
  which other work on the machine disturbs less than requests/s.
- Dip: the same load against the reconciler for ``--seconds`` while
  ``--swaps`` promotions are pushed, evenly spaced; answers are counted per
  250 ms, and each swap's lowest bucket is compared with the median bucket,
  beside the lowest bucket away from every swap (the machine's own noise).
- Faults: the bare remote served over smart HTTP (``git http-backend``) by a
  server that can stop answering (it accepts connections and never replies),
  followed by a second reconciler (``--fetch-timeout 5s``). Stall: from the
  moment the server stops answering until ``/status`` reports it (sync
  Unknown, "no answer"). Recovery: a promotion is pushed during the stall;
  from the moment the server answers again (dropping the connections it held,
  as a restarted server does) until that version answers. Restart: the
  reconciler is stopped, the server stalls, and a new one starts on the same
  cache while one client posts back to back: the requests answered 200 from
  the first one on, over ``--seconds``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import random
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ROOT, child_env, parser, row, work_folder
from benchmarks.serving import CLIENTS, Server, ServerFailed, bodies, free_port, load, post
from testing.git import git, init_repo
from testing.git_http import GitHttpServer

Figures = dict[str, dict[str, float]]
MODEL = "iris"
STAGE = "production"
PUSH = ["refs/gitml/*:refs/gitml/*", "refs/heads/gitml/*:refs/heads/gitml/*"]
INTERVAL = 1.0  # seconds: gitml reconcile --interval 1s
BUCKET = 0.25  # seconds per throughput bucket in the dip measurement
STREAK = 10  # answers in a row from the new version ...
STREAK_SECONDS = 0.2  # ... spanning at least this long
PROMOTION_TIMEOUT = 30.0
START_TIMEOUT = 120.0  # a new process imports scikit-learn and loads the model first


class Repo:
    """The work repository: registers versions and assigns them on the stage."""

    def __init__(self, base: Path, versions: int) -> None:
        import gitml
        from gitml.registry.stages import Stages
        from gitml.registry.versions import Registry
        from testing.registry import log_iris_run

        self.bare = init_repo(base / "remote.git", bare=True)
        self.path = init_repo(base / "work")
        os.chdir(self.path)
        client = gitml.Client()
        registry = Registry(client)
        run_id, _, _ = log_iris_run(client)
        for _ in range(versions):
            registry.register(f"runs:/{run_id}/model", MODEL)
        self.stages = Stages(registry, client.config)
        self.assign(1)
        self.push()

    def assign(self, version: int) -> str:
        """Declare ``version`` on the stage in this repository; returns the stage commit."""
        return self.stages.assign(MODEL, version, STAGE, message=f"benchmark: v{version}").commit

    def push(self, *refspecs: str) -> float:
        """Push the gitml refs (or ``refspecs``) to the bare remote; returns perf_counter()
        at the push's return."""
        git(self.path, "push", "-q", str(self.bare), *(refspecs or PUSH))
        return time.perf_counter()


def served_version(conn: http.client.HTTPConnection, body: bytes) -> str:
    conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    payload = response.read()
    if response.status != 200:
        raise RuntimeError(f"status {response.status}: {payload[:200]!r}")
    return response.getheader("X-Gitml-Model-Version") or ""


def wait_for_version(port: int, body: bytes, want: str, since: float) -> float:
    """Seconds from ``since`` until every answer is ``want`` (see the module's docstring)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    first: float | None = None
    streak = 0
    try:
        while True:
            got = served_version(conn, body)
            now = time.perf_counter()
            if got != want:
                first, streak = None, 0
                if now - since > PROMOTION_TIMEOUT:
                    raise RuntimeError(f"still {got} {PROMOTION_TIMEOUT:g} s after pushing {want}")
                continue
            if first is None:
                first = now
            streak += 1
            if streak >= STREAK and now - first >= STREAK_SECONDS:
                return first - since
    finally:
        conn.close()


def promotions(repo: Repo, port: int, body: bytes, count: int, first: int) -> list[float]:
    """Latencies in seconds of ``count`` promotions, versions ``first``, ``first + 1``, ..."""
    latencies = []
    # A push at a random point of the reconciler's 1 s cycle: pushing at once would lock
    # onto its phase (this loop's own period follows the swaps) and skew every figure.
    phase = random.Random(6)
    for version in range(first, first + count):
        repo.assign(version)
        time.sleep(phase.uniform(0, INTERVAL))
        pushed = repo.push()
        latencies.append(wait_for_version(port, body, f"{MODEL}/{version}", pushed))
    return latencies


def cpu_seconds(pid: int) -> float | None:
    """CPU time of process ``pid`` and its waited-for children (git), or None without /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # utime, stime, cutime, cstime: fields 14 to 17 of proc(5), 12 to 15 after the name.
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def throughput(servers: dict[str, Server], body: bytes, seconds: float, rounds: int) -> Figures:
    """Each server's load figures, averaged over ``rounds`` alternating rounds, and its CPU
    milliseconds per request (robust to other work on the machine, unlike requests/s)."""
    figures: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
    cpu: dict[str, float | None] = dict.fromkeys(servers, 0.0)
    answers = dict.fromkeys(servers, 0)
    for _ in range(rounds):
        for name, server in servers.items():
            done: list[float] = []
            before = cpu_seconds(server.proc.pid)
            figures[name].append(load(server.port, body, seconds / rounds, done))
            after = cpu_seconds(server.proc.pid)
            total = cpu[name]
            if before is None or after is None or total is None:
                cpu[name] = None
            else:
                cpu[name] = total + after - before
            answers[name] += len(done)
    result = {}
    for name, runs in figures.items():
        result[name] = {key: statistics.mean(f[key] for f in runs) for key in runs[0]}
        used = cpu[name]
        result[name]["cpu_ms"] = 1000 * used / answers[name] if used is not None else math.nan
    return result


def idle_cpu(server: Server, seconds: float) -> float:
    """CPU milliseconds per second the server spends unloaded (the reconciler: polling git)."""
    before = cpu_seconds(server.proc.pid)
    time.sleep(seconds)
    after = cpu_seconds(server.proc.pid)
    return math.nan if before is None or after is None else 1000 * (after - before) / seconds


def dip(repo: Repo, server: Server, body: bytes, seconds: float, first: int, swaps: int) -> Dip:
    """The load for ``seconds`` while ``swaps`` promotions are pushed, evenly spaced.

    A swap applied after the load's end is not measured (NaN).
    The stage commits are made (and the model refs pushed) before the load, so
    during it only ``git push <commit>:refs/heads/gitml/<stage>`` runs here.
    Answers are counted per BUCKET seconds. A swap's buckets are those that
    overlap the reconcile pass that applied it (``/status``: when the pass ended
    and how long it took) or the bucket after; each swap's dip is its lowest
    bucket against the median bucket. The noise is the same for the lowest
    bucket outside every swap: other work on the machine.
    """
    commits = [repo.assign(version) for version in range(first, first + swaps)]
    repo.push(*PUSH[:1])
    completions: list[float] = []
    pushed: list[float] = []

    def push() -> None:
        for k, commit in enumerate(commits):
            due = began_load + seconds * (k + 0.25) / swaps  # leaves time to apply it
            time.sleep(max(0.0, due - time.perf_counter()))
            pushed.append(repo.push(f"{commit}:refs/heads/gitml/{STAGE}"))

    began_load = time.perf_counter()
    wall = time.time() - began_load  # perf_counter() + wall is time.time()
    pusher = threading.Thread(target=push)
    pusher.start()
    figures = load(server.port, body, seconds, completions)
    pusher.join()
    last = f"{MODEL}/{first + swaps - 1}"
    wait_for_version(server.port, body, last, pushed[-1])
    history = {h["revision"]: h for h in status(server.port)["history"]}
    buckets = [0] * int(seconds / BUCKET)
    for done in completions:
        index = int((done - began_load) / BUCKET)
        if index < len(buckets):
            buckets[index] += 1
    median = statistics.median(buckets)
    dips, synced, passes, windows, inside = [], [], [], [], set()
    for commit, at in zip(commits, pushed, strict=True):
        applied = history.get(commit)
        if applied is None or applied["result"] != "Synced":
            raise RuntimeError(f"the reconciler did not sync {commit}: {applied}")
        ended = applied["at"] - wall
        began = ended - applied["seconds"]
        swap = [
            i for i in range(len(buckets))
            if began_load + i * BUCKET < ended + BUCKET and began_load + (i + 1) * BUCKET > began
        ]  # fmt: skip
        inside.update(swap)
        windows.append(swap)
        if ended + BUCKET > began_load + len(buckets) * BUCKET:
            dips.append(math.nan)  # applied too late to be seen whole: not measured
        else:
            dips.append(100 * (1 - min(buckets[i] for i in swap) / median) if median else 100.0)
        synced.append(ended - at)
        passes.append(applied["seconds"])
    others = [n for i, n in enumerate(buckets) if i not in inside]
    during = [buckets[i] for i in sorted(inside)]
    return Dip(
        rps=figures["rps"],
        median=median / BUCKET,
        dips=dips,
        noise=100 * (1 - min(others) / median) if median and others else math.nan,
        mean_change=(
            100 * (statistics.mean(during) / statistics.mean(others) - 1)
            if during and others and any(others)
            else math.nan
        ),
        synced=synced,
        passes=passes,
        buckets=buckets,
        windows=windows,
    )


@dataclass
class Dip:
    """What ``dip`` measured; rates in requests/s, dips in % below the median bucket."""

    rps: float
    median: float
    dips: list[float]
    noise: float
    mean_change: float  # % of the swaps' buckets' mean against the other buckets'
    synced: list[float]
    passes: list[float]
    buckets: list[int]  # answers per BUCKET seconds
    windows: list[list[int]]  # each swap's buckets


def status(port: int) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/status")
    answer: dict[str, Any] = json.loads(conn.getresponse().read())
    conn.close()
    return answer


def reconcile_seconds(port: int) -> list[float]:
    """How long each synced pass of the reconciler's history took (fetch, load, check)."""
    return [h["seconds"] for h in status(port)["history"] if h["result"] == "Synced"]


@dataclass
class Faults:
    """What ``faults`` measured, in seconds and requests."""

    stall_reported: float  # stall start -> /status says so
    recovery_applied: float  # remote answers again -> the pending promotion answers
    restart_ready: float  # new process -> first 200, remote down, warm cache
    restart_sent: int  # requests sent from the first 200 on
    restart_answered: int  # of those, answered 200


def faults(
    repo: Repo, reconcile: list[str], env: dict[str, str], base: Path, version: int, seconds: float
) -> Faults:
    """A reconciler following the remote over HTTP, through a stall, a recovery and a restart."""
    server = GitHttpServer(repo.bare.parent).start()
    command = [
        *reconcile[:3], server.url(repo.bare.name), *reconcile[4:],
        "--fetch-timeout", "5s", "--cache", str(base / "cache-faults"),
    ]  # fmt: skip
    follower: Server | None = None
    try:
        follower = start(command, env, base / "faults.stderr", health=True)
        server.stall()
        stalled = time.perf_counter()
        while "no answer" not in (status(follower.port)["last_error"] or ""):
            if time.perf_counter() - stalled > PROMOTION_TIMEOUT:
                raise RuntimeError("the stall was never reported")
            time.sleep(0.01)
        reported = time.perf_counter() - stalled
        repo.assign(version)
        repo.push()  # to the bare repository itself: the HTTP server still stalls
        server.recover()
        applied = wait_for_version(
            follower.port, bodies()[0], f"{MODEL}/{version}", time.perf_counter()
        )
        follower.stop()
        server.stall()
        answers: list[int] = []
        began = time.perf_counter()
        port = free_port()
        follower = Server(
            [p.replace("{port}", str(port)) for p in command], port, env, base / "restart.stderr"
        )
        first = restart_load(port, bodies()[0], seconds, began, answers)
        return Faults(
            stall_reported=reported,
            recovery_applied=applied,
            restart_ready=first,
            restart_sent=len(answers),
            restart_answered=sum(1 for a in answers if a == 200),
        )
    finally:
        if follower is not None:
            follower.stop()
        server.close()


def restart_load(port: int, body: bytes, seconds: float, began: float, answers: list[int]) -> float:
    """Post back to back from the first 200 on, for ``seconds``; returns when that came."""
    first = None
    while first is None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
            if conn.getresponse().status == 200:
                first = time.perf_counter()
        except OSError:
            time.sleep(0.01)
        if time.perf_counter() - began > START_TIMEOUT:
            raise RuntimeError(f"the restarted reconciler did not answer in {START_TIMEOUT:g} s")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    while time.perf_counter() - first < seconds:
        try:
            conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            answers.append(response.status)
        except OSError:
            answers.append(0)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    return first - began


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def wait_for_health(server: Server, timeout: float = 120) -> None:
    """Until GET /health answers 200: the reconciler serves the branch's tip."""
    while time.perf_counter() - server.started < timeout:
        if server.proc.poll() is not None:
            break
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("GET", "/health")
        if conn.getresponse().status == 200:
            return
        time.sleep(0.01)
    server.stop()
    tail = server.log.read_text(errors="replace").strip().splitlines()[-30:]
    raise ServerFailed(f"no /health 200; its stderr ({server.log}):\n" + "\n".join(tail))


def start(command: list[str], env: dict[str, str], log: Path, health: bool = False) -> Server:
    """A started server that answers /ping (and /health, with ``health``), warmed by a call."""
    port = free_port()
    server = Server([p.replace("{port}", str(port)) for p in command], port, env, log)
    try:
        server.ready()
        if health:
            wait_for_health(server)
        post(http.client.HTTPConnection("127.0.0.1", port), bodies()[0])  # first-call warm-up
    except BaseException:
        server.stop()
        raise
    return server


def main() -> None:
    parse = parser(__doc__ or "")
    parse.add_argument("--promotions", type=int, default=20, help="promotions timed")
    parse.add_argument("--seconds", type=float, default=10.0, help="load duration, each")
    parse.add_argument("--rounds", type=int, default=4, help="alternating throughput rounds")
    parse.add_argument("--swaps", type=int, default=3, help="promotions during the dip load")
    parse.add_argument(
        "--quick", action="store_true", help="at most 3 promotions and 3 s loads, no warm-up start"
    )
    args = parse.parse_args()
    if args.quick:
        args.promotions, args.seconds = min(args.promotions, 3), min(args.seconds, 3)
        args.rounds, args.swaps = min(args.rounds, 2), min(args.swaps, 1)
    args.promotions, args.swaps = max(1, args.promotions), max(1, args.swaps)
    args.workdir = args.workdir / "reconcile"
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    base = work_folder(args, "reconcile-")
    one_row = bodies()[0]
    # v1 is declared first, then the timed promotions, those of the dip, and the faults'.
    repo = Repo(base, versions=2 + args.promotions + args.swaps)
    os.chdir(base)

    env = child_env(
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    gitml_exe = str(Path(sys.executable).with_name("gitml"))
    reconcile = [
        gitml_exe, "reconcile", "--remote", str(repo.bare), "--stage", STAGE,
        "--interval", f"{INTERVAL:g}s", "--port", "{port}",
    ]  # fmt: skip
    if not args.quick:  # one unmeasured start warms the bytecode caches
        warm = base / "warm.stderr"
        start([*reconcile, "--cache", str(base / "cache-warm")], env, warm, health=True).stop()
    began = time.perf_counter()
    log = base / "reconcile.stderr"
    follower = start([*reconcile, "--cache", str(base / "cache")], env, log, health=True)
    startup = time.perf_counter() - began
    os.chdir(repo.path)  # where models:/ resolves
    serve = [gitml_exe, "models", "serve", "-m", f"models:/{MODEL}/1", "--port", "{port}"]
    try:
        plain = start(serve, env, base / "serve.stderr")
    except BaseException:
        follower.stop()
        raise
    os.chdir(base)
    try:
        servers = {"serve": plain, "reconcile": follower}
        speed = throughput(servers, one_row, args.seconds, args.rounds)
        plain.stop()
        polling = idle_cpu(follower, min(args.seconds / 2, 3.0))
        latencies = promotions(repo, follower.port, one_row, args.promotions, 2)
        passes = reconcile_seconds(follower.port)
        swap = dip(repo, follower, one_row, args.seconds, args.promotions + 2, args.swaps)
    finally:
        plain.stop()
        follower.stop()
    version = args.promotions + args.swaps + 2
    fault = faults(repo, reconcile, env, base, version, min(args.seconds, 5.0))
    show(args, speed, polling, latencies, passes, swap, startup)
    show_faults(fault)
    print(
        f"whole run {time.perf_counter() - started:.0f} s; 1-minute load average "
        f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs"
    )


def show(
    args: argparse.Namespace,
    speed: Figures,
    polling: float,
    latencies: list[float],
    passes: list[float],
    swap: Dip,
    startup: float,
) -> None:
    serve, ours = speed["serve"], speed["reconcile"]
    print(
        f"\n{args.promotions} promotions pushed to a bare remote, followed by gitml reconcile "
        f"--remote --interval 1s;\nload: 1 worker, {CLIENTS} client threads, one-row JSON, "
        f"{args.seconds:g} s per server in {args.rounds} alternating rounds; "
        f"swaps: {args.swaps} pushed during {args.seconds:g} s of that load, "
        f"{BUCKET * 1000:.0f} ms buckets"
    )
    rps = f"{change(serve, ours, 'rps'):+.1f}"
    cpu = f"{change(serve, ours, 'cpu_ms'):+.1f}"
    lines = [
        ("promotion latency p50 s", f"{statistics.median(latencies):.2f}", "-"),
        ("promotion latency p95 s", f"{percentile(latencies, 0.95):.2f}", "<= 2"),
        ("promotion latency max s", f"{max(latencies):.2f}", "-"),
        ("reconcile pass (fetch, load, check) median s", f"{statistics.median(passes):.3f}", "-"),
        ("start-up until /health s", f"{startup:.2f}", "-"),
        ("requests/s, gitml models serve", f"{serve['rps']:.0f}", "-"),
        ("requests/s, gitml reconcile", f"{ours['rps']:.0f}", f">= {0.9 * serve['rps']:.0f}"),
        ("requests/s, reconcile vs models serve %", rps, ">= -10"),
        ("p50 ms, gitml models serve", f"{serve['p50']:.2f}", "-"),
        ("p50 ms, gitml reconcile", f"{ours['p50']:.2f}", "-"),
        ("p99 ms, gitml models serve", f"{serve['p99']:.2f}", "-"),
        ("p99 ms, gitml reconcile", f"{ours['p99']:.2f}", "-"),
        ("server CPU ms/request, gitml models serve", f"{serve['cpu_ms']:.3f}", "-"),
        ("server CPU ms/request, gitml reconcile", f"{ours['cpu_ms']:.3f}", "-"),
        ("CPU per request, reconcile vs models serve %", cpu, "<= +11"),
        ("reconcile idle CPU, polling git every 1s, ms/s", f"{polling:.1f}", "-"),
        ("swap: load req/s, median bucket", f"{swap.median:.0f}", "-"),
        ("swap: dip, worst swap %", f"{max(swap.dips, key=nan_last):.1f}", "<= 20"),
        ("swap: dip, each swap %", " ".join(f"{d:.0f}" for d in swap.dips), "-"),
        ("swap: dip outside the swaps (noise) %", f"{swap.noise:.1f}", "-"),
        ("swap: swaps' buckets vs the others, mean %", f"{swap.mean_change:+.1f}", "-"),
        ("swap: push until synced under load, max s", f"{max(swap.synced):.2f}", "-"),
        ("swap: reconcile pass under load, max s", f"{max(swap.passes):.3f}", "-"),
    ]  # fmt: skip
    for name, value, target in lines:
        row(name, value, target)


def show_faults(fault: Faults) -> None:
    share = 100 * fault.restart_answered / fault.restart_sent if fault.restart_sent else math.nan
    lines = [
        ("fault: stall until /status says so s", f"{fault.stall_reported:.2f}",
         f"<= {3 * INTERVAL:g}"),
        ("fault: remote back until promotion answers s",
         f"{fault.recovery_applied:.2f}", f"<= {2 * INTERVAL:g}"),
        ("fault: restart, remote down: first 200 s", f"{fault.restart_ready:.2f}", "-"),
        ("fault: restart: answered after start-up",
         f"{fault.restart_answered}/{fault.restart_sent}", "all"),
        ("fault: restart: answered after start-up %", f"{share:.1f}", "100"),
    ]  # fmt: skip
    for name, value, target in lines:
        row(name, value, target)


def nan_last(value: float) -> float:
    """A key that makes max() skip NaN (a swap not measured) unless all are."""
    return -math.inf if math.isnan(value) else value


def change(before: dict[str, float], after: dict[str, float], key: str) -> float:
    return 100 * (after[key] / before[key] - 1)


if __name__ == "__main__":
    main()
