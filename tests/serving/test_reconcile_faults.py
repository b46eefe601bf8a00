"""The reconciler against a remote that misbehaves: real git, real bare remotes, and a real
smart-HTTP server (``git http-backend``) that can stop answering."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import gitml
from gitml.registry.declarations import branch
from gitml.registry.stages import Stages
from gitml.registry.versions import Registry
from gitml.serving.reconcile import FetchError, Reconciler, RemoteSource, redact
from testing.git import git
from testing.git_http import GitHttpServer, git_http_server, processes_mentioning
from testing.procs import wait_for
from testing.reconcile import STAGE, CountingLoader, push, write_declaration


@pytest.fixture
def server(remote: Path) -> Iterator[GitHttpServer]:
    with git_http_server(remote.parent, credentials=("deploy", "secret")) as server:
        yield server


def served(reconciler: Reconciler) -> dict[str, list[int]]:
    current = reconciler.current
    assert current is not None
    return {n: [v.version for v in r.versions] for n, r in current.models.items()}


# -- credentials --------------------------------------------------------------------


def test_redact_drops_user_info_from_every_url() -> None:
    text = "fetch http://deploy:secret@host/ml.git and https://tok@h:8443/x, not git@host:ml.git"
    assert redact(text) == (
        "fetch http://***@host/ml.git and https://***@h:8443/x, not git@host:ml.git"
    )


def test_credentials_in_the_url_are_used_and_never_shown(
    server: GitHttpServer, client: gitml.Client, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gitml.serving.reconcile")
    url = server.url("ml.git", userinfo="deploy:secret")
    source = RemoteSource(url, tmp_path / "cache", fetch_timeout=2)
    reconciler = Reconciler(source, STAGE, client.config, loader=CountingLoader())
    outcome = reconciler.reconcile()
    assert outcome is not None and outcome.result == "Synced", outcome
    assert reconciler.status()["source"] == server.url("ml.git", userinfo="***")
    # A remote that fails (a stall, a wrong path) says so without the password.
    server.stall()
    assert reconciler.reconcile() is None
    server.recover()
    wrong = RemoteSource(server.url("nope.git", userinfo="deploy:secret"), tmp_path / "c2")
    assert Reconciler(wrong, STAGE, client.config).reconcile() is None
    shown = [
        json.dumps(reconciler.status()),
        reconciler.prometheus(),
        json.dumps(Reconciler(wrong, STAGE, client.config).status()),
        *(r.getMessage() for r in caplog.records),
    ]
    assert any("no answer in 2 s" in text for text in shown), shown
    assert all("secret" not in text for text in shown), [t for t in shown if "secret" in t]


# -- a remote that stops answering ---------------------------------------------------


def test_a_stalled_fetch_is_reported_then_killed_with_its_children(
    server: GitHttpServer, client: gitml.Client, tmp_path: Path
) -> None:
    url = server.url("ml.git", userinfo="deploy:secret")
    source = RemoteSource(url, tmp_path / "cache", fetch_timeout=1.5)
    reconciler = Reconciler(source, STAGE, client.config, loader=CountingLoader(), stall_after=0.3)
    reconciler.reconcile()
    server.stall()
    passing = threading.Thread(target=reconciler.reconcile)
    began = time.monotonic()
    passing.start()
    # While git waits, /status says so: the tip is unknown, the served state stale.
    wait_for(lambda: reconciler.status()["last_error"], 1.5, "the stall in /status")
    status = reconciler.status()
    assert status["sync"] == "Unknown" and status["health"] == "Healthy"
    assert "no answer for" in status["last_error"] and status["stale"]["age_seconds"] >= 0
    assert "gitml_fetch_in_flight_seconds 0.0" not in reconciler.prometheus()
    passing.join(timeout=10)
    took = time.monotonic() - began
    assert not passing.is_alive() and 1.5 <= took < 4, took
    status = reconciler.status()
    assert "no answer in 1.5 s (--fetch-timeout); killed it" in status["last_error"]
    assert 'gitml_fetch_failures_total{reason="timeout"} 1' in reconciler.prometheus()
    assert "gitml_source_stale 1" in reconciler.prometheus()
    # git, git-remote-http and anything else git started are gone.
    assert processes_mentioning(f"127.0.0.1:{server.port}") == []
    server.recover()
    reconciler.reconcile()
    assert reconciler.status()["sync"] == "Synced" and reconciler.status()["stale"] is None


def test_stop_kills_a_stalled_fetch_at_once(
    server: GitHttpServer, client: gitml.Client, tmp_path: Path
) -> None:
    source = RemoteSource(server.url("ml.git", userinfo="deploy:secret"), tmp_path / "cache")
    reconciler = Reconciler(source, STAGE, client.config, loader=CountingLoader())
    server.stall()
    loop = threading.Thread(target=reconciler.run, args=(0.1,))
    loop.start()
    wait_for(lambda: source.busy_for() > 0.2, 5, "git to wait on the remote")
    began = time.monotonic()
    reconciler.stop()
    loop.join(timeout=5)
    assert not loop.is_alive() and time.monotonic() - began < 1
    assert processes_mentioning(f"127.0.0.1:{server.port}") == []


def test_a_webhook_restarts_a_stalled_fetch(
    adder_repo: Path,
    remote: Path,
    server: GitHttpServer,
    stages: Stages,
    client: gitml.Client,
    tmp_path: Path,
) -> None:
    source = RemoteSource(
        server.url("ml.git", userinfo="deploy:secret"), tmp_path / "cache", fetch_timeout=60
    )
    reconciler = Reconciler(source, STAGE, client.config, loader=CountingLoader(), stall_after=0.2)
    reconciler.reconcile()
    server.stall()
    loop = threading.Thread(target=reconciler.run, args=(3600,))
    loop.start()
    try:
        wait_for(lambda: source.busy_for() > 0.3, 5, "git to wait on the remote")
        server.resume()  # new connections are answered; the held one stays silent
        stages.assign("adder", 2, STAGE)
        push(adder_repo, remote)
        assert reconciler.wake()  # the push's webhook
        wait_for(lambda: reconciler.current and served(reconciler) == {"adder": [2]}, 10, "v2")
    finally:
        reconciler.stop()
        server.recover()
        loop.join(timeout=10)
    # Killed by the webhook, long before its 60 s deadline.
    assert reconciler.metrics.fetch_failures["timeout"] == 1


# -- a remote that cannot be read, and a restart without it --------------------------


def test_an_unreachable_remote_is_unknown_not_synced(
    remote: Path, server: GitHttpServer, client: gitml.Client, tmp_path: Path
) -> None:
    source = RemoteSource(server.url("ml.git", userinfo="deploy:secret"), tmp_path / "cache")
    reconciler = Reconciler(source, STAGE, client.config, loader=CountingLoader())
    reconciler.reconcile()
    server.close()  # connection refused from now on
    for _ in range(3):
        assert reconciler.reconcile() is None
    status = reconciler.status()
    assert (status["health"], status["sync"]) == ("Healthy", "Unknown")
    assert "git ls-remote failed" in status["last_error"]
    assert status["stale"]["age_seconds"] >= 0 and status["fetch_failures"] == 3
    assert 'gitml_fetch_failures_total{reason="error"} 3' in reconciler.prometheus()
    assert reconciler.synced  # still serving what it had: a replica stays in the balancer


def test_a_restart_with_the_remote_down_serves_the_cache(
    adder_repo: Path,
    remote: Path,
    server: GitHttpServer,
    stages: Stages,
    client: gitml.Client,
    tmp_path: Path,
) -> None:
    url = server.url("ml.git", userinfo="deploy:secret")
    cache = tmp_path / "cache"
    first = Reconciler(RemoteSource(url, cache), STAGE, client.config)
    assert first.reconcile() is not None
    applied = first.status()["applied_revision"]
    server.stall()
    # The restart: a new process's reconciler on the same cache, the remote not answering.
    source = RemoteSource(url, cache, fetch_timeout=0.5)
    restarted = Reconciler(source, STAGE, client.config)
    outcome = restarted.reconcile()
    assert outcome is not None and outcome.result == "Synced" and outcome.revision == applied
    assert restarted.synced  # ready: serving
    status = restarted.status()
    assert (status["health"], status["sync"]) == ("Healthy", "Unknown")
    assert status["stale"]["from_cache"] is True and status["stale"]["age_seconds"] >= 0
    assert status["desired_revision"] is None and status["applied_revision"] == applied
    current = restarted.current
    assert current is not None
    assert current.models["adder"].pick().predictor.predict([[1.0, 2.0]]).tolist() == [[2, 3]]
    # The remote comes back with a promotion: it is applied, and nothing is stale.
    stages.assign("adder", 2, STAGE)
    push(adder_repo, remote)
    server.recover()
    outcome = restarted.reconcile()
    assert outcome is not None and outcome.result == "Synced"
    assert served(restarted) == {"adder": [2]} and restarted.status()["stale"] is None


def test_a_damaged_cache_is_not_served_after_a_restart(
    remote: Path, server: GitHttpServer, client: gitml.Client, tmp_path: Path
) -> None:
    url = server.url("ml.git", userinfo="deploy:secret")
    cache = tmp_path / "cache"
    assert Reconciler(RemoteSource(url, cache), STAGE, client.config).reconcile() is not None
    # The model's files, unpacked from the cache's Git objects before, are damaged:
    # sha256 catches it, and they are unpacked again.
    damaged = list((cache / "gitml" / "models-cache").rglob("offset.txt"))
    assert damaged
    for loaded in damaged:
        loaded.write_text("999")
    server.close()
    again = Reconciler(RemoteSource(url, cache), STAGE, client.config)
    outcome = again.reconcile()
    assert outcome is not None and outcome.result == "Synced"  # fetched again from Git objects
    current = again.current
    assert current is not None
    assert current.models["adder"].pick().predictor.predict([[1.0, 2.0]]).tolist() == [[2, 3]]


# -- what the remote lacks ----------------------------------------------------------


def test_a_model_missing_on_the_remote_is_degraded_not_a_fetch_error(
    adder_repo: Path, remote: Path, client: gitml.Client, stages: Stages, tmp_path: Path
) -> None:
    reconciler = Reconciler(
        RemoteSource(str(remote), tmp_path / "cache"), STAGE, client.config, loader=CountingLoader()
    )
    good = reconciler.reconcile()
    assert good is not None
    ghost = write_declaration(
        client.store, STAGE, "ghost", "model: ghost\nversions:\n- version: 1\n  weight: 100\n"
    )
    push(adder_repo, remote)
    outcome = reconciler.reconcile()
    assert outcome is not None and outcome.result == "Failed"
    assert outcome.error == f"{remote} has no refs/gitml/models/ghost"
    status = reconciler.status()
    assert (status["health"], status["sync"]) == ("Degraded", "OutOfSync")
    assert status["last_error"] == outcome.error and status["fetch_failures"] == 0
    # Looked at again on each pass, without a new outcome each time.
    assert reconciler.reconcile() is None and len(reconciler.outcomes) == 2
    # A model ref deleted from the remote, declared again: the same.
    stages.remove("ghost", STAGE)
    git(remote, "update-ref", "-d", "refs/gitml/models/other")
    git(adder_repo, "update-ref", "-d", "refs/gitml/models/other")
    write_declaration(
        client.store, STAGE, "other", "model: other\nversions:\n- version: 1\n  weight: 100\n"
    )
    push(adder_repo, remote)
    outcome = reconciler.reconcile()
    assert outcome is not None and outcome.error == f"{remote} has no refs/gitml/models/other"
    assert served(reconciler) == {"adder": [1]} and reconciler.desired != ghost


# -- every replica decides the same ---------------------------------------------------


def tamper_model_file(bare: Path, run_id: str) -> None:
    """Change the model's offset file in the remote's run commit, keeping the manifest."""
    ref = f"refs/gitml/runs/{run_id}"
    listing = git(bare, "ls-tree", "-r", ref).splitlines()
    (target,) = [line for line in listing if line.endswith("offset.txt")]
    path = target.split("\t", 1)[1]
    blob = git(bare, "hash-object", "-w", "--stdin", stdin="100.0").strip()
    index = bare / "tamper-index"
    env = {**os.environ, "GIT_INDEX_FILE": str(index)}
    git(bare, "read-tree", ref, env=env)
    git(bare, "update-index", "--cacheinfo", f"100644,{blob},{path}", env=env)
    tree = git(bare, "write-tree", env=env).strip()
    commit = git(bare, "commit-tree", tree, "-p", ref, "-m", "tampered").strip()
    git(bare, "update-ref", ref, commit)
    index.unlink()


def test_replicas_decide_the_same_after_files_are_tampered_with(
    adder_repo: Path, remote: Path, client: gitml.Client, stages: Stages, tmp_path: Path
) -> None:
    old = Reconciler(RemoteSource(str(remote), tmp_path / "old"), STAGE, client.config)
    assert old.reconcile() is not None and old.status()["health"] == "Healthy"
    tamper_model_file(remote, Registry(client).get_version("adder", 1).run_id)
    # A new revision declares the same version again.
    commit = stages.assign("adder", 1, STAGE, message="the same version, again").commit
    git(adder_repo, "push", "-q", str(remote), f"{branch(STAGE)}:{branch(STAGE)}")
    fresh = Reconciler(RemoteSource(str(remote), tmp_path / "fresh"), STAGE, client.config)
    outcomes = [old.reconcile(), fresh.reconcile()]
    for outcome in outcomes:
        assert outcome is not None and outcome.revision == commit and outcome.result == "Failed"
        assert outcome.error is not None and "offset.txt" in outcome.error
    assert outcomes[0].error == outcomes[1].error  # type: ignore[union-attr]
    assert old.status()["health"] == fresh.status()["health"] == "Degraded"


# -- a lock left in the cache ---------------------------------------------------------


def test_a_stale_lock_in_the_cache_is_broken_and_a_live_one_named(
    adder_repo: Path, remote: Path, stages: Stages, tmp_path: Path
) -> None:
    source = RemoteSource(str(remote), tmp_path / "cache")
    source.refresh(STAGE)
    lock = source.store.root / "refs" / "heads" / "gitml" / f"{STAGE}.lock"
    lock.write_text("")  # a fresh lock: another git holds it
    tip = stages.assign("adder", 2, STAGE).commit
    push(adder_repo, remote)
    with pytest.raises(FetchError, match=r"Unable to create .*production\.lock': File exists") as e:
        source.refresh(STAGE)
    assert "kept moving" not in str(e.value)
    # Left by a process killed an hour ago (older than any fetch may take): broken.
    an_hour_ago = time.time() - 3600
    os.utime(lock, (an_hour_ago, an_hour_ago))
    source.refresh(STAGE)
    assert source.store.tip(branch(STAGE)) == tip and not lock.exists()
