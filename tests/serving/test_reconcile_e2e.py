"""GitOps end to end: real ``gitml reconcile`` processes follow a bare remote under load.

A work repository registers versions and changes the production branch; the
real ``git push`` publishes each change; three replicas (one of them with two
uvicorn workers, so four reconcilers) follow the remote while a load generator
calls ``/invocations`` on every replica. Every answer must be a 200, from a
version the answering revision declares, never from the broken revision, and
from the pushed revision once the propagation window has passed.
"""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

import gitml
from gitml.registry.declarations import branch
from gitml.registry.stages import Stages
from gitml.registry.versions import Registry
from testing import procs
from testing.git import git, init_repo
from testing.git_http import git_http_server, processes_mentioning
from testing.procs import child_env
from testing.reconcile import EXAMPLE, STAGE, LoadGenerator, broken_run, offset_run, push
from testing.serving import free_socket

# Bounded: the load generator stops after 60 s whatever happens, every wait has a
# timeout, and the whole module gets 120 s. About 16 s on an idle two-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

# Seconds from a push until every replica must answer from it. Generous: CI
# machines are shared; locally it takes well under a second (the test prints the figures).
WINDOW = 10.0
BODY = json.dumps({"inputs": EXAMPLE.tolist()}).encode()
_JSON = {"Content-Type": "application/json"}


@dataclass
class Step:
    """One push: the commit, when it was pushed, and what it should make the replicas serve."""

    what: str
    commit: str
    pushed: float
    serves: dict[int, int] | None  # version -> weight; None: the commit must be refused
    converged: float = 0.0  # when every replica was done with it (at most WINDOW after)


@dataclass
class Replica:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    workers: int


def wait_healthy(replicas: list[Replica]) -> None:
    for replica in replicas:
        wait_for(
            lambda r=replica: httpx2.get(f"{r.url}/health", timeout=5).status_code == 200,
            30,
            f"{replica.url}/health",
        )


def start_replica(
    root: Path,
    remote: Path | str,
    name: str,
    *options: str,
    workers: int = 1,
    cache: str | None = None,
) -> Replica:
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    log = root / f"{name}.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [
                "gitml", "reconcile", "--remote", str(remote), "--stage", STAGE,
                "--interval", "200ms", "--port", str(port),
                "--cache", str(root / f"{cache or name}-cache"),
                "--workers", str(workers), *options,
            ],
            cwd=root, env=child_env(), stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    return Replica(f"http://127.0.0.1:{port}", proc, log, workers)


def stop(replica: Replica) -> None:
    if replica.proc.poll() is None:
        replica.proc.send_signal(signal.SIGTERM)
        try:
            replica.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            replica.proc.kill()
            replica.proc.wait()


# Until the server answers, a request fails: that is "not yet".
wait_for = functools.partial(procs.wait_for, retry_on=(httpx2.HTTPError,))


def status(replica: Replica) -> dict[str, Any]:
    # A new connection each time, so each of a replica's workers gets asked in turn.
    result: dict[str, Any] = httpx2.get(f"{replica.url}/status", timeout=5).json()
    return result


def converged(replicas: list[Replica], step: Step) -> bool:
    """Every reconciler (each worker of each replica) is done with ``step``."""
    for replica in replicas:
        seen: set[int] = set()
        for _ in range(50):  # new connections land on either worker
            s = status(replica)
            if s["last_attempted_revision"] != step.commit:
                return False
            if step.serves is not None and s["applied_revision"] != step.commit:
                return False
            seen.add(s["pid"])
            if len(seen) == replica.workers:
                break
        else:
            raise AssertionError(f"{replica.url}: only workers {seen} answered")
    return True


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[list[Replica]]:
    started: list[Replica] = []
    yield started
    for replica in started:
        stop(replica)


def test_promote_canary_break_fix_and_roll_back_under_load(
    tmp_path: Path, repo: Path, replicas: list[Replica]
) -> None:
    began = time.monotonic()
    client = gitml.Client(identity="Ada <ada@example.com>")
    registry = Registry(client)
    offsets = {1: 1.0, 2: 2.0, 4: 4.0, 5: 5.0}
    for number in range(1, 6):
        run_id = broken_run(client) if number == 3 else offset_run(client, offsets[number])
        assert registry.register(f"runs:/{run_id}/model", "adder").version == number
    stages = Stages(registry, client.config)
    remote = init_repo(tmp_path / "remote.git", bare=True)
    first = stages.assign("adder", 1, STAGE).commit
    steps = [Step("initial v1", first, push(repo, remote), {1: 100})]

    replicas += [
        start_replica(tmp_path, remote, "a", workers=2),
        start_replica(tmp_path, remote, "b"),
        start_replica(tmp_path, remote, "c"),
    ]
    wait_healthy(replicas)
    steps[0].converged = time.monotonic() + wait_for(
        lambda: converged(replicas, steps[0]), WINDOW, "the first revision"
    )
    started = time.monotonic() - began

    def change(what: str, serves: dict[int, int] | None, act: Callable[[], str]) -> Step:
        commit = act()
        step = Step(what, commit, push(repo, remote), serves)
        steps.append(step)
        step.converged = step.pushed + wait_for(lambda: converged(replicas, step), WINDOW, what)
        traffic(step.converged, f"steady traffic after {what}")
        return step

    def traffic(since: float, what: str) -> None:
        """Wait until the load has had 50 answers to requests sent after ``since``."""
        wait_for(lambda: sum(a.sent >= since for a in list(load.answers)) >= 50, WINDOW, what)

    targets = [replicas[0].url, replicas[0].url, replicas[1].url, replicas[2].url]
    with LoadGenerator(targets, BODY, deadline=60) as load:
        traffic(steps[0].converged, "traffic on the first revision")
        change("promote v2", {2: 100}, lambda: stages.assign("adder", 2, STAGE).commit)
        canary = change(
            "canary v4", {2: 80, 4: 20}, lambda: stages.assign("adder", 4, STAGE, weight=20).commit
        )
        broken = change("broken v3", None, lambda: stages.assign("adder", 3, STAGE).commit)
        for replica in replicas:
            s = status(replica)
            assert s["health"] == "Degraded" and s["applied_revision"] == canary.commit
            assert "version 3 failed its health check on its input example" in s["last_error"]
            assert httpx2.get(f"{replica.url}/health", timeout=5).status_code == 200
        change("fix v5", {5: 100}, lambda: stages.assign("adder", 5, STAGE).commit)
        change("promote v4", {4: 100}, lambda: stages.assign("adder", 4, STAGE).commit)
        change("roll back", {5: 100}, lambda: stages.rollback(STAGE, "adder").commit)
    answers = load.answers
    total = time.monotonic() - began

    # No request failed.
    failed = [a for a in answers if a.status != 200]
    assert failed == [], failed[:5]
    assert len(answers) > 200, len(answers)

    # Every answer came from a version its revision declares, with that version's output.
    declared = {s.commit: s.serves for s in steps if s.serves is not None}
    for a in answers:
        assert a.revision in declared, f"answered from {a.revision} (broken: {broken.commit})"
        assert a.version is not None
        number = int(a.version.split("/")[1])
        assert number in declared[a.revision], a
        assert a.predictions == (EXAMPLE + offsets[number]).tolist()

    # Between a push and the moment every replica is done with it, an answer comes from
    # the revision served before or the pushed one; after that, only the pushed one.
    before = serving = steps[0]
    for step, after in zip(steps, [*steps[1:], None], strict=True):
        end = after.pushed if after else float("inf")
        if step.serves is not None:
            before, serving = serving, step  # a refused commit leaves the last good serving
        for a in answers:
            if step.pushed <= a.sent < end:
                allowed = {serving.commit}
                if a.sent < step.converged:
                    allowed.add(before.commit)
                assert a.revision in allowed, (step.what, a)

    # The canary split: 80/20 on every replica, counted on answers from its revision.
    split = Counter(a.version for a in answers if a.revision == canary.commit)
    share = split["adder/4"] / sum(split.values())
    assert 0.12 < share < 0.28, split

    # Logs: one JSON object a line, from every reconciler (replica a has two workers).
    pids = set()
    for replica in replicas:
        stop(replica)
        events = [
            json.loads(line) for line in replica.log.read_text().splitlines() if line[:1] == "{"
        ]
        assert {e["event"] for e in events} >= {"reconcile_synced", "reconcile_failed"}
        failures = [e for e in events if e["event"] == "reconcile_failed"]
        assert {e["revision"] for e in failures} == {broken.commit}
        pids |= {(replica.url, e["pid"]) for e in events}
    assert len(pids) == 4, pids
    took = ", ".join(f"{s.what} {s.converged - s.pushed:.2f}s" for s in steps[1:])
    print(f"\nreplicas up in {started:.1f}s; {len(answers)} requests; converged: {took}")
    print(f"whole test {total:.1f}s")


def test_replicas_converge_on_the_same_revision_after_a_push(
    tmp_path: Path, adder_repo: Path, stages: Stages, remote: Path, replicas: list[Replica]
) -> None:
    # Two replicas share one cache (as uvicorn workers do); the third has its own.
    replicas += [
        start_replica(tmp_path, remote, "a", cache="shared"),
        start_replica(tmp_path, remote, "b", cache="shared"),
        start_replica(tmp_path, remote, "c"),
    ]
    wait_healthy(replicas)
    for number in (2, 1, 2):
        stages.assign("adder", number, STAGE)
        push(adder_repo, remote)
        tip = git(adder_repo, "rev-parse", branch(STAGE)).strip()
        wait_for(
            lambda t=tip: {status(r)["applied_revision"] for r in replicas} == {t},
            10,
            f"v{number}",
        )
        answered = {
            httpx2.post(f"{r.url}/invocations", content=BODY, headers=_JSON).headers[
                "x-gitml-model-version"
            ]
            for r in replicas
        }
        assert answered == {f"adder/{number}"}
    # Nobody left a scratch ref behind in the shared cache (once all are stopped:
    # a fetch in flight has one).
    for replica in replicas:
        stop(replica)
    assert git(tmp_path / "shared-cache", "for-each-ref", "refs/gitml-reconcile/") == ""


def answered_version(replica: Replica, **headers: str) -> str | None:
    response = httpx2.post(
        f"{replica.url}/invocations", content=BODY, headers={**_JSON, **headers}, timeout=5
    )
    return response.headers.get("x-gitml-model-version") if response.status_code == 200 else None


def test_a_stalled_remote_is_reported_restarted_by_the_webhook_and_shut_down_promptly(
    tmp_path: Path, adder_repo: Path, stages: Stages, remote: Path, replicas: list[Replica]
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("hook-token write\n")
    hook = {"Authorization": "bearer hook-token"}  # the scheme in any case
    with git_http_server(remote.parent, credentials=("deploy", "secret")) as server:
        url = server.url("ml.git", userinfo="deploy:secret")
        replica = start_replica(
            tmp_path, url, "a", "--token-file", str(tokens), "--fetch-timeout", "30s"
        )
        replicas.append(replica)
        wait_healthy([replica])
        # Nobody sees the password: not /status (it needs no token), not the log.
        assert "secret" not in httpx2.get(f"{replica.url}/status", timeout=5).text
        assert "secret" not in httpx2.get(f"{replica.url}/metrics", timeout=5).text
        server.stall()
        stages.assign("adder", 2, STAGE)
        push(adder_repo, remote)
        took = wait_for(
            lambda: "no answer for" in (status(replica)["last_error"] or ""), 5, "stall"
        )
        s = status(replica)
        assert s["sync"] == "Unknown" and s["stale"] is not None and took < 3
        metrics = httpx2.get(f"{replica.url}/metrics", timeout=5).text
        assert "gitml_source_stale 1" in metrics
        # The remote answers again, but the connection git holds stays silent: the push's
        # webhook kills that fetch and starts a new one, long before the 30 s deadline.
        server.resume()
        answer = httpx2.post(f"{replica.url}/hooks/git", headers=hook, timeout=5)
        assert answer.status_code == 202 and "restarted" in answer.json(), answer.text
        wait_for(lambda: answered_version(replica, **hook) == "adder/2", 10, "v2 after the webhook")
        assert status(replica)["sync"] == "Synced"
        # SIGTERM in the middle of a stalled fetch stops the process at once.
        server.stall()
        stages.assign("adder", 3, STAGE)
        push(adder_repo, remote)
        wait_for(lambda: "no answer for" in (status(replica)["last_error"] or ""), 5, "stall")
        began = time.monotonic()
        replica.proc.send_signal(signal.SIGTERM)
        replica.proc.wait(timeout=5)
        assert time.monotonic() - began < 2
        assert processes_mentioning(f"127.0.0.1:{server.port}") == []
    assert "secret" not in replica.log.read_text()


def test_a_restart_with_the_remote_down_serves_the_warm_cache(
    tmp_path: Path, adder_repo: Path, stages: Stages, remote: Path, replicas: list[Replica]
) -> None:
    stages.assign("adder", 2, STAGE)
    push(adder_repo, remote)
    with git_http_server(remote.parent) as server:
        url = server.url("ml.git")
        options = ("--fetch-timeout", "1s")
        first = start_replica(tmp_path, url, "a", *options, cache="kept")
        replicas.append(first)
        wait_healthy([first])
        stop(first)
        server.stall()  # the remote stops answering, and the replica restarts
        again = start_replica(tmp_path, url, "b", *options, cache="kept")
        replicas.append(again)
        wait_healthy([again])
        assert answered_version(again) == "adder/2"
        s = status(again)
        assert (s["health"], s["sync"]) == ("Healthy", "Unknown")
        assert s["stale"]["from_cache"] and s["stale"]["age_seconds"] >= 0
        # The remote returns with a promotion: caught up.
        stages.assign("adder", 3, STAGE)
        push(adder_repo, remote)
        server.recover()
        wait_for(lambda: answered_version(again) == "adder/3", 10, "v3 once the remote is back")
        assert status(again)["stale"] is None
