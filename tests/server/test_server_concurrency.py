"""16 client processes each log 1,000 metric points and 10 artifacts while the server
is restarted once; every point and file arrives exactly once."""

from __future__ import annotations

import hashlib
import signal
import time
from pathlib import Path

import pytest

import gitml
from testing.procs import child_env, finish, read_until, spawn
from testing.tracking_server import TrackingServer

CLIENTS = 16
POINTS = 1000
FILES = 10

# Every child logs a quarter of its points, says so, and goes on logging while
# the test restarts the server; it holds its second half until the server is back,
# so the restart always lands in the middle of every client's logging.
CHILD = """
import os, sys, time, gitml
client = gitml.Client()
run = client.create_run(run_name=f"client-{sys.argv[1]}")
print(run.id, flush=True)
for i in range(POINTS):
    client.log_metric(run.id, "loss", 1.0 / (i + 1), step=i)
    if i % 100 == 99:
        n = i // 100
        client.log_text(run.id, f"{run.id} file {n} " * 50, f"files/{n}.txt")
    if i == POINTS // 4:
        print("READY", flush=True)
    if i == POINTS // 2:
        deadline = time.monotonic() + 60
        while not os.path.exists(sys.argv[2]):
            assert time.monotonic() < deadline, "the server was not restarted"
            time.sleep(0.01)
client.set_terminated(run.id)
print("DONE", flush=True)
""".replace("POINTS", str(POINTS))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_sixteen_clients_and_a_server_restart_lose_and_repeat_nothing(
    repo: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    server = TrackingServer(repo)
    server.start()
    env = child_env(GITML_TRACKING_URI=server.url, GITML_HTTP_RETRY_SECONDS="60")
    restarted = tmp_path / "restarted"
    children = [spawn(CHILD, repo, str(n), str(restarted), env=env) for n in range(CLIENTS)]
    try:
        run_ids = [read_until(child, timeout=60)[0] for child in children]
        # SIGTERM: uvicorn stops taking connections and ends with the requests in
        # flight; clients see refused connections and resets, and retry.
        server.stop(signal.SIGTERM)
        server.start()
        restarted.touch()
        for child in children:
            code, out, err = finish(child, timeout=90)
            assert code == 0, err
            assert out.strip().endswith("DONE")
    finally:
        for child in children:
            child.kill()
        server.stop()

    client = gitml.Client(str(repo))
    assert len(set(run_ids)) == CLIENTS
    for run_id in run_ids:
        run = client.get_run(run_id)
        assert run.status == "FINISHED"
        history = client.get_metric_history(run_id, "loss")
        assert sorted(p.step for p in history) == list(range(POINTS)), run_id
        listed = client.list_artifacts(run_id)
        assert [a.path for a in listed] == sorted(f"files/{n}.txt" for n in range(FILES))
        for artifact in listed:
            n = int(Path(artifact.path).stem)
            expected = (f"{run_id} file {n} " * 50).encode()
            assert artifact.sha256 == hashlib.sha256(expected).hexdigest()
            assert client.read_artifact(run_id, artifact.path) == expected
    assert time.monotonic() - started < 90
