"""Sharing through a real Git server over smart HTTP with basic authentication.

nginx and fcgiwrap run ``git http-backend`` (testing/git_server.py) with
gitml's ``pre-receive`` hook on the served repository. Each machine is a clone
with its own home: machine A gives its password through git's ``store``
credential helper, machine B in the remote's URL, as users do. Every ``gitml``
command runs as a real process, and none may print the password.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
import yaml

import gitml
from gitml.git.store import Store
from gitml.registry.stages import Stages
from gitml.registry.versions import Registry
from gitml.sharing import remote as sharing
from gitml.tracking import fluent
from testing import git_server, procs
from testing.git import fsck, git, git_env, init_repo
from testing.git_server import GitHttpServer, git_http_server
from testing.procs import finish, spawn
from testing.reconcile import EXAMPLE, register_offsets
from testing.registry import log_iris_run
from testing.serving import free_socket

pytestmark = pytest.mark.skipif(
    git_server.available() is not None, reason=str(git_server.available())
)

RUNS = "refs/gitml/runs/"
STAGES = "refs/heads/gitml/"


@dataclass
class Machine:
    name: str
    path: Path
    env: dict[str, str]
    password: str

    @property
    def identity(self) -> str:
        return f"{self.name} <{self.name.lower()}@example.com>"

    def refs(self, prefix: str = "refs/gitml/") -> dict[str, str]:
        return refs(self.path, prefix)

    def gitml(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        """``gitml ARGS`` as a process in this machine's clone; it never shows the password."""
        done = subprocess.run(
            ["gitml", *args],
            cwd=self.path,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert self.password not in done.stdout + done.stderr
        if ok:
            assert done.returncode == 0, done.stdout + done.stderr
        return done

    @contextlib.contextmanager
    def client(self) -> Iterator[gitml.Client]:
        """A client in this clone, for the fluent API (``log_model``) too."""
        fluent.set_tracking_uri(str(self.path))
        client = gitml.Client(str(self.path), identity=self.identity)
        try:
            yield client
        finally:
            client.close()
            fluent.set_tracking_uri(None)


def refs(repo: Path, prefix: str) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)", prefix)
    return dict(line.split(" ", 1) for line in out.splitlines())


def machine(tmp: Path, server: GitHttpServer, name: str, *, in_url: bool = False) -> Machine:
    """A clone of ``shared.git`` with gitml's refspecs, its own home and the password."""
    home = tmp / f"home-{name}"
    home.mkdir()
    env = git_env(home)
    email = f"{name.lower()}@example.com"
    env.update(
        GIT_AUTHOR_NAME=name,
        GIT_COMMITTER_NAME=name,
        GIT_AUTHOR_EMAIL=email,
        GIT_COMMITTER_EMAIL=email,
        GIT_TERMINAL_PROMPT="0",
    )
    credentials = f"{server.user}:{server.password}"
    if in_url:
        url = server.url("shared.git", credentials=credentials)
    else:
        url = server.url("shared.git")
        saved = home / "git-credentials"
        saved.write_text(server.url("", credentials=credentials).rstrip("/") + "\n")
        saved.chmod(0o600)
        (home / ".gitconfig").write_text(f"[credential]\n\thelper = store --file={saved}\n")
    path = tmp / name.lower()
    git(tmp, "clone", "-q", url, str(path), env=env)
    store = Store(path)
    try:
        sharing.setup_remote(store, "origin")
    finally:
        store.close()
    return Machine(name, path, env, server.password)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[GitHttpServer]:
    with git_http_server(tmp_path / "server") as running:
        shared = running.create_repository("shared.git")
        # The served repository's default branch, pushed as any first commit would be.
        work = init_repo(tmp_path / "first")
        git(work, "push", "-q", str(shared), "main")
        yield running


@pytest.fixture
def a(tmp_path: Path, server: GitHttpServer) -> Machine:
    return machine(tmp_path, server, "A")


@pytest.fixture
def b(tmp_path: Path, server: GitHttpServer) -> Machine:
    return machine(tmp_path, server, "B", in_url=True)


def served(server: GitHttpServer, prefix: str = "refs/gitml/") -> dict[str, str]:
    return refs(server.repos / "shared.git", prefix)


@pytest.mark.slow
def test_push_and_pull_runs_a_model_and_a_stage(
    a: Machine, b: Machine, server: GitHttpServer
) -> None:
    with a.client() as client:
        run_id, _, _ = log_iris_run(client)
        registry = Registry(client)
        registry.register(f"runs:/{run_id}/model", "churn")
        Stages(registry, client.config).assign("churn", 1, "production")
    pushed = a.gitml("push")
    assert "pushed" in pushed.stdout and "to origin" in pushed.stdout
    assert served(server) == a.refs() and RUNS + run_id in a.refs()
    assert served(server, STAGES) == a.refs(STAGES) != {}

    pulled = b.gitml("pull")
    assert "updated" in pulled.stdout
    assert b.refs() == a.refs() and b.refs(STAGES) == a.refs(STAGES)
    with b.client() as client:
        version = Registry(client).get_version("churn", 1)
        assert version.run_id == run_id
        Registry(client).check_digest(version)  # the model's files came with the run
    assert "up to date" in b.gitml("push").stdout

    # B changes a stage through the URL-with-password remote; A pulls it back.
    with b.client() as client:
        Stages(Registry(client), client.config).assign("churn", 1, "staging")
    b.gitml("push")
    a.gitml("pull")
    assert a.refs(STAGES) == b.refs(STAGES) == served(server, STAGES)
    assert a.refs() == b.refs() == served(server)
    fsck(server.repos / "shared.git")


def declare(machine: Machine, stage: str, *versions: int) -> None:
    """Commit a declaration of ``churn`` ``versions`` on a new stage branch, with git's
    plumbing: nothing on the client side looks at it before the push."""
    weight = 100 // len(versions)
    served = [{"version": v, "weight": weight} for v in versions]
    content = yaml.safe_dump({"model": "churn", "versions": served})
    blob = git(machine.path, "hash-object", "-w", "--stdin", stdin=content).strip()
    tree = git(machine.path, "mktree", stdin=f"100644 blob {blob}\tchurn.yaml\n").strip()
    root = git(machine.path, "mktree", stdin=f"040000 tree {tree}\tmodels\n").strip()
    commit = git(machine.path, "commit-tree", root, "-m", "hand-written").strip()
    git(machine.path, "update-ref", STAGES + stage, commit)


@pytest.mark.slow
def test_the_hooks_refusal_reaches_the_pusher_and_nothing_moves(
    a: Machine, b: Machine, server: GitHttpServer
) -> None:
    # A version of a model that exists nowhere.
    declare(a, "staging", 7)
    refused = a.gitml("push", ok=False)
    assert refused.returncode == 1 and refused.stdout == ""
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: git push to origin failed"), lines
    assert "remote: gitml: push rejected: 1 problem(s) in refs/heads/gitml/staging" in lines[0]
    reason = "field 'versions.0.version': no registered model 'churn'"
    assert f"remote: refs/heads/gitml/staging:models/churn.yaml: {reason}" in lines[0]
    assert "Traceback" not in refused.stderr
    assert served(server) == served(server, STAGES) == {}

    # With the password in the URL, git's own message names the server without it.
    declare(b, "production", 8)
    refused = b.gitml("push", ok=False)
    assert "refs/heads/gitml/production" in refused.stderr and "127.0.0.1" in refused.stderr
    assert served(server) == served(server, STAGES) == {}


@pytest.mark.slow
def test_every_problem_the_hook_finds_reaches_the_pusher(a: Machine) -> None:
    declare(a, "staging", 7, 8)
    declare(a, "production", 9)
    refused = a.gitml("push", ok=False)
    assert refused.returncode == 1
    assert "push rejected: 3 problem(s)" in refused.stderr
    for where in (
        "staging:models/churn.yaml: field 'versions.0",
        "staging:models/churn.yaml: field 'versions.1",
        "production:models/churn.yaml: field 'versions.0",
    ):
        assert where in refused.stderr


@pytest.mark.slow
def test_a_wrong_password_is_one_clear_line_and_changes_nothing(
    a: Machine, server: GitHttpServer
) -> None:
    with a.client() as client:
        run = client.create_run(run_name="unshared")
        client.set_terminated(run.id)
    mine = a.refs()
    wrong = "not-" + server.password
    helper = Path(a.env["HOME"]) / "git-credentials"
    helper.write_text(server.url("", credentials=f"{server.user}:{wrong}").rstrip("/") + "\n")
    for command, url in (
        ("push", server.url("shared.git")),  # the credential helper's password, now wrong
        ("pull", server.url("shared.git", credentials=f"{server.user}:{wrong}")),
    ):
        git(a.path, "remote", "set-url", "origin", url)
        done = a.gitml(command, ok=False)
        out = done.stdout + done.stderr
        assert wrong not in out
        assert done.returncode == 1 and done.stdout == "", out
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: git "), out
        assert "Authentication failed" in lines[0], out
        assert server.url("shared.git") in lines[0], out  # names the remote
        assert served(server) == {}
        assert a.refs() == mine
        assert a.refs("refs/gitml-incoming/") == a.refs("refs/gitml-outgoing/") == {}


CONCURRENT = """
    import sys
    import gitml
    from gitml.sharing import remote as sharing
    client = gitml.Client(identity=sys.argv[1])
    for i in range(2):
        run = client.create_run(run_name=f"run-{i}")
        client.log_metric(run.id, "loss", 1.0 / (i + 1))
        client.set_terminated(run.id)
        client.flush()
        report = sharing.push(client.store, "origin")
        assert not report.problems, report.problems
    client.close()
"""


@pytest.mark.slow
def test_concurrent_pushes_from_three_clones_lose_nothing(
    tmp_path: Path, server: GitHttpServer
) -> None:
    machines = [machine(tmp_path, server, name, in_url=name == "C") for name in "ABC"]
    procs = [spawn(CONCURRENT, m.path, m.identity, env=m.env) for m in machines]
    for proc in procs:
        code, out, err = finish(proc, timeout=120)
        assert code == 0, err
        assert server.password not in out + err
    runs: dict[str, str] = {}
    for m in machines:
        runs.update(m.refs(RUNS))
        assert m.refs("refs/gitml-outgoing/") == {}
    assert len(runs) == 6
    assert served(server, RUNS) == runs
    assert len(served(server, "refs/gitml/experiments/")) == 1
    fsck(server.repos / "shared.git")


# Until the server answers, a request fails: that is "not yet".
wait_for = functools.partial(procs.wait_for, retry_on=(httpx2.HTTPError,))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_reconciler_serves_a_promotion_pushed_over_http(
    tmp_path: Path, a: Machine, server: GitHttpServer
) -> None:
    with a.client() as client:
        stages = Stages(register_offsets(client, "adder", [1.0, 2.0]), client.config)
        first = stages.assign("adder", 1, "production").commit
    a.gitml("push")
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "reconcile.log"
    # The reconciler authenticates as A does: through A's credential helper.
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [
                "gitml", "reconcile", "--remote", server.url("shared.git"),
                "--stage", "production", "--interval", "200ms", "--port", str(port),
                "--cache", str(tmp_path / "cache"),
            ],
            cwd=tmp_path, env=a.env, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    try:

        def applied(commit: str) -> bool:
            assert proc.poll() is None, log.read_text()
            status = httpx2.get(f"{url}/status", timeout=5).json()
            return bool(status["applied_revision"] == commit)

        wait_for(lambda: applied(first), 60, "the first revision")
        with a.client() as client:
            stages = Stages(Registry(client), client.config)
            second = stages.assign("adder", 2, "production").commit
        a.gitml("push")
        wait_for(lambda: applied(second), 20, "the promotion pushed over HTTP")
        answer = httpx2.post(
            f"{url}/invocations",
            content=json.dumps({"inputs": EXAMPLE.tolist()}),
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-gitml-model-version"] == "adder/2"
        assert answer.json()["predictions"] == (EXAMPLE + 2.0).tolist()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert server.password not in log.read_text()


def test_the_server_asks_for_the_password_and_stops_cleanly(tmp_path: Path) -> None:
    with git_http_server(tmp_path / "server") as server:
        server.create_repository("shared.git")
        refs_url = server.url("shared.git") + "/info/refs?service=git-upload-pack"
        assert httpx2.get(refs_url, timeout=10).status_code == 401
        wrong = httpx2.get(refs_url, auth=(server.user, "wrong"), timeout=10)
        assert wrong.status_code == 401
        right = httpx2.get(refs_url, auth=(server.user, server.password), timeout=10)
        assert right.status_code == 200, server.log()
        assert right.headers["content-type"] == "application/x-git-upload-pack-advertisement"
        nginx = int((server.root / "nginx.pid").read_text())
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(refs_url, timeout=10)
    with pytest.raises(ProcessLookupError):
        os.kill(nginx, 0)
    with socket.socket(socket.AF_UNIX) as sock, pytest.raises(OSError):
        sock.connect(str(server.root / "fcgiwrap.sock"))
