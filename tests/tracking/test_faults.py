"""Faults that must not lose an acknowledged point: a ref lock left or held by
another process, a bad journal line, a server whose disk is full, and kill -9
at random moments of a logging process and of a tracking server."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import gitml
from gitml.errors import Conflict, RefBusy
from gitml.tracking.rest import ServerUnavailable, journal_root
from testing import procs
from testing.git import fsck
from testing.procs import child_env, write_config
from testing.tracking_server import TrackingServer, tracking_server

RUNS = "refs/gitml/runs/"


def journal_lines(repo: Path) -> list[bytes]:
    root = repo / ".git" / "gitml" / "journal"
    return [ln for p in sorted(root.glob("*.log")) for ln in p.read_bytes().splitlines()]


def git_lock(repo: Path, run_id: str) -> Path:
    """A lock on the run's ref as git itself leaves one: the new value, no gitml claim."""
    lock = repo / ".git" / "refs" / "gitml" / "runs" / f"{run_id}.lock"
    lock.write_text("0" * 40 + "\n")
    return lock


def steps(client: gitml.Client, run_id: str, key: str = "loss") -> list[int]:
    return [p.step for p in client.get_metric_history(run_id, key)]


@pytest.mark.slow
def test_a_flush_that_cannot_commit_keeps_the_journal_and_the_values(repo: Path) -> None:
    write_config(repo, flush_interval=3600, flush_points=1_000_000)
    client = gitml.Client()
    run = client.create_run(commit=True)
    for i in range(300):
        client.log_metric(run.id, "loss", 1 / (i + 1), step=i)
    lock = git_lock(repo, run.id)
    with pytest.raises(RefBusy, match=rf"{RUNS}{run.id}: .* nothing was written"):
        client.flush()
    assert len(journal_lines(repo)) == 300  # the journal still holds every point
    lock.unlink()
    client.flush()
    assert steps(client, run.id) == list(range(300))
    assert journal_lines(repo) == []
    fsck(repo)


LOGGER = """
import sys, time
import gitml

client = gitml.Client()
run = client.create_run(run_name="killed", commit=True)  # the points alone journaled
print(run.id)
for i in range(500):
    client.log_metric(run.id, "loss", 1 / (i + 1), step=i)
print("READY")
time.sleep(600)
"""


def killed_logger(repo: Path) -> str:
    """The run of a child killed (-9) with 500 points in its journal only."""
    write_config(repo, flush_interval=3600, flush_points=1_000_000)
    child = procs.spawn(LOGGER, repo)
    run_id = procs.read_until(child)[0]
    child.kill()
    procs.finish(child)
    return run_id


@pytest.mark.slow
def test_recovery_keeps_a_journal_it_cannot_commit_and_says_so(repo: Path) -> None:
    run_id = killed_logger(repo)
    lock = git_lock(repo, run_id)
    report = gitml.Client().recovered
    assert len(report) == 1
    assert report[0].startswith(f"{run_id}.")
    assert "not committed, kept the journal" in report[0] and "recovered" not in report[0]
    assert len(journal_lines(repo)) == 500
    lock.unlink()
    client = gitml.Client()
    assert client.recovered == [f"run {run_id}: recovered 500 metric points, 0 params, 0 tags"]
    assert steps(client, run_id) == list(range(500))
    assert journal_lines(repo) == []


@pytest.mark.slow
def test_a_garbage_line_in_a_journal_is_reported_and_the_rest_recovered(repo: Path) -> None:
    run_id = killed_logger(repo)
    [segment] = (repo / ".git" / "gitml" / "journal").glob("*.log")
    lines = segment.read_bytes().splitlines(keepends=True)
    # A damaged line in the middle, and a torn one at the end.
    segment.write_bytes(b"".join([*lines[:100], b"M\tloss\t\x00\x00garbage\n", *lines[100:]]))
    with segment.open("ab") as f:
        f.write(b"M\tloss\t500\t17")
    client = gitml.Client()
    assert client.recovered == [
        f"{segment.stem}: line 101 skipped, it cannot be read (not enough values to unpack "
        "(expected 3, got 1)): b'M\\tloss\\t\\x00\\x00garbage'",
        f"{segment.stem}: line 502 skipped, its writer died while writing it: "
        "b'M\\tloss\\t500\\t17'",
        f"run {run_id}: recovered 500 metric points, 0 params, 0 tags",
    ]
    assert steps(client, run_id) == list(range(500))
    assert journal_lines(repo) == []
    assert gitml.Client().recovered == []
    fsck(repo)


SEGMENT_ON_A_FULL_DISK = """
import os, resource, sys
from pathlib import Path
from gitml.tracking import journal, metrics

segment = journal.Segment.create(Path(sys.argv[1]), "0" * 32)
segment.write(journal.param_record("lr", "0.1"))
resource.setrlimit(resource.RLIMIT_FSIZE, (100, resource.RLIM_INFINITY))  # the disk is full
try:
    segment.write(journal.param_record("big", "x" * 500))
except OSError as exc:
    print("refused:", exc.strerror)
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
segment.write(journal.metric_record("loss", metrics.line(1, 2, 0.5)))
print(segment.path)
"""


def test_a_journal_write_the_disk_refuses_leaves_no_partial_line(tmp_path: Path) -> None:
    done = procs.run(SEGMENT_ON_A_FULL_DISK, tmp_path, str(tmp_path / "journal"))
    assert done.returncode == 0, done.stderr
    refused, path = done.stdout.splitlines()
    assert refused == "refused: File too large"
    entries, skipped = gitml.tracking.journal.parse(Path(path).read_bytes())
    assert skipped == []
    assert entries.params == {"lr": "0.1"}
    assert entries.metrics == {"loss": [b"1\t2\t0.5\n"]}


def prlimit_fsize(pid: int, limit: str) -> None:
    """Set the largest file process ``pid`` may write (its soft limit: it can be raised again)."""
    subprocess.run(["prlimit", f"--pid={pid}", f"--fsize={limit}:unlimited"], check=True)


@pytest.mark.slow
def test_a_batch_the_server_fails_to_write_is_kept_and_applied_once_the_disk_has_room(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = TrackingServer(repo)
    server.start()
    try:
        monkeypatch.setenv("GITML_HTTP_RETRY_SECONDS", "3")
        client = gitml.Client(server.url)
        run = client.create_run(run_name="full disk")
        client.log_metric(run.id, "loss", 0.5, step=0)
        client.flush()
        assert server.proc is not None
        # No file of the server may grow past 2 KiB: the next chunk of history does not fit.
        prlimit_fsize(server.proc.pid, "2048")
        rng = random.Random(7)
        for i in range(1, 1000):
            client.log_metric(run.id, "loss", rng.random(), step=i)
        with pytest.raises(ServerUnavailable, match="HTTP 500"):
            client.flush()
        prlimit_fsize(server.proc.pid, "unlimited")
        client.flush()
        client.set_terminated(run.id)
        assert steps(client, run.id) == list(range(1000))
    finally:
        server.stop()
    local = gitml.Client(str(repo))
    assert steps(local, run.id) == list(range(1000))
    fsck(repo)


@pytest.mark.slow
def test_a_batch_sent_while_the_run_is_locked_is_kept_and_sent_again(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = TrackingServer(repo)
    server.start()
    try:
        monkeypatch.setenv("GITML_HTTP_RETRY_SECONDS", "3")
        client = gitml.Client(server.url)
        run = client.create_run(run_name="locked")
        lock = git_lock(repo, run.id)
        for i in range(100):
            client.log_metric(run.id, "loss", 1 / (i + 1), step=i)
        with pytest.raises(ServerUnavailable, match="HTTP 503"):
            client.flush()
        lock.unlink()
        client.flush()
        assert steps(client, run.id) == list(range(100))
    finally:
        server.stop()


# -- kill -9 at random moments ------------------------------------------------------------

# Forks one logger per round (gitml is loaded once: fifty fresh interpreters
# would take most of a minute on a loaded machine). Each logger resumes the
# run, which first recovers the journal the previous, killed one left, then
# logs points from its own range of steps and appends each step to its ack
# file once log_metric has returned. With "stop" it stops itself (SIGSTOP)
# the first time it is about to rename the run's ref lock into place.
FORK_LOGGERS = """
import os, signal, sys
import gitml

run_id, acks = sys.argv[1], sys.argv[2]
lock = f"refs/gitml/runs/{run_id}.lock"
gitml.Client()  # imports what a client needs once, before the forks


def log(round_no, stop):
    if stop:
        rename = os.replace

        def stop_before_renaming_the_ref(src, dst):
            if os.fsdecode(src).endswith(lock):
                os.kill(os.getpid(), signal.SIGSTOP)
            rename(src, dst)

        os.replace = stop_before_renaming_the_ref
    client = gitml.Client()
    fd = os.open(f"{acks}/{round_no}", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    for i in range(1_000_000):
        step = round_no * 1_000_000 + i
        client.log_metric(run_id, "loss", 1 / (i + 1), step=step, timestamp=step)
        os.write(fd, b"%d\\n" % step)


for command in sys.stdin:
    round_no, stop = command.split()
    pid = os.fork()
    if pid == 0:
        log(int(round_no), stop == "stop")
        os._exit(0)
    print(pid, flush=True)
    os.waitpid(pid, 0)
"""


def acknowledged(acks: Path) -> list[int]:
    """Every step a logger wrote whole to its ack file."""
    steps: list[int] = []
    for path in acks.iterdir():
        data = path.read_bytes()
        steps += [int(s) for s in data[: data.rfind(b"\n") + 1].split()]
    return steps


def wait_for_acks(path: Path, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.002)
    raise AssertionError(f"{path}: fewer than {count} acknowledged points in {timeout}s")


@pytest.mark.slow
def test_fifty_kill_9s_while_logging_lose_and_duplicate_nothing(repo: Path, tmp_path: Path) -> None:
    # Small batches: many commits, so kills land inside them as often as between.
    write_config(repo, flush_points=40, flush_interval=1.0)
    run_id = gitml.Client().create_run(run_name="killed fifty times").id
    acks = tmp_path / "acks"
    acks.mkdir()
    lock = repo / ".git" / f"{RUNS}{run_id}.lock"
    rng = random.Random(50)
    zygote = subprocess.Popen(
        [sys.executable, "-c", FORK_LOGGERS, run_id, str(acks)],
        cwd=repo,
        env=child_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert zygote.stdin is not None and zygote.stdout is not None
    stopped = 0
    try:
        for round_no in range(50):
            stop = round_no % 5 == 4  # one round in five dies holding the ref's lock
            zygote.stdin.write(f"{round_no} {'stop' if stop else 'run'}\n")
            zygote.stdin.flush()
            pid = int(zygote.stdout.readline())
            if stop:
                procs.wait_stopped(pid)
                assert lock.exists()
                stopped += 1
            else:
                wait_for_acks(acks / str(round_no), rng.randint(1, 300))
            os.kill(pid, signal.SIGKILL)
    finally:
        zygote.stdin.close()
        zygote.wait(timeout=60)
        zygote.stdout.close()
    assert stopped == 10
    client = gitml.Client()
    history = steps(client, run_id)
    logged = acknowledged(acks)
    assert len(history) == len(set(history)), "a point was committed twice"
    assert set(logged) <= set(history), f"{len(set(logged) - set(history))} points lost"
    assert not lock.exists()
    assert journal_lines(repo) == []
    fsck(repo)


REST_LOGGER = """
import os, sys
import gitml

client = gitml.Client()  # GITML_TRACKING_URI: the server
run = client.create_run(run_name="logged through a server killed mid-load")
print(run.id, flush=True)
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
for i in range(int(sys.argv[2])):
    client.log_metric(run.id, "loss", 1 / (i + 1), step=i)
    os.write(fd, b"%d\\n" % i)
client.flush()
"""


def wait_for_a_commit(ref: Path, since: str, timeout: float = 60) -> str:
    """The run's tip once the server has committed past ``since``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tip = ref.read_text().strip()
        if tip != since:
            return tip
        time.sleep(0.005)
    raise AssertionError(f"the server committed nothing to {ref.name} in {timeout}s")


@pytest.mark.slow
def test_a_tracking_server_killed_mid_load_and_restarted_loses_nothing(
    repo: Path, tmp_path: Path
) -> None:
    points = 12_000
    server = TrackingServer(repo)
    server.start()
    acks = tmp_path / "acks"
    acks.mkdir()
    env = child_env(GITML_TRACKING_URI=server.url, GITML_HTTP_RETRY_SECONDS="120")
    child = procs.spawn(REST_LOGGER, repo, str(acks / "rest"), str(points), env=env)
    try:
        assert child.stdout is not None
        run_id = child.stdout.readline().strip()
        ref = repo / ".git" / f"{RUNS}{run_id}"
        tip = ref.read_text().strip()  # the run's creation
        for _ in range(2):
            # Killed as soon as it has committed a batch: in the middle of the next one.
            tip = wait_for_a_commit(ref, tip)
            server.stop(signal.SIGKILL)
            server.start()
        code, _, err = procs.finish(child, timeout=300)
        assert code == 0, err
    finally:
        if child.poll() is None:
            child.kill()
            procs.finish(child)
        server.stop()
    history = steps(gitml.Client(str(repo)), run_id)
    assert len(history) == len(set(history)), "a point was committed twice"
    assert acknowledged(acks) == list(range(points))
    assert sorted(history) == list(range(points))
    fsck(repo)


@pytest.mark.slow
def test_a_batch_the_server_applies_without_a_changed_param_is_confirmed_and_kept_once(
    repo: Path,
) -> None:
    with tracking_server(repo) as server:
        first = gitml.Client(server.url)
        run = first.create_run()
        first.log_param(run.id, "lr", "0.1")
        first.flush()
        other = gitml.Client(server.url)  # knows nothing of the first's param
        other.log_param(run.id, "lr", "0.2")
        for i in range(50):
            other.log_metric(run.id, "loss", 1 / (i + 1), step=i)
        with pytest.raises(Conflict, match=r"param 'lr' is already '0\.1'"):
            other.flush()
        other.flush()  # confirmed as held by the server: nothing is sent again
        assert steps(other, run.id) == list(range(50))
        assert other.get_run(run.id).params == {"lr": "0.1"}
        for segment in journal_root(server.url).glob(f"{os.getpid()}-*.log"):
            marks = [ln.split(b"\t")[0] for ln in segment.read_bytes().splitlines()]
            assert marks.count(b"S") == marks.count(b"A")  # every declared batch acknowledged
