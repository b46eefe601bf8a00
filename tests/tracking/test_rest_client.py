"""``gitml.Client`` and the fluent API over HTTP, against a real ``gitml server`` process:
batching, the client journal, kill -9 of a client, a server that goes away and
comes back, tokens, and the CLI's ``--tracking-uri``."""

from __future__ import annotations

import json
import math
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

import gitml
from gitml.errors import Conflict, InvalidInput, NotFound
from gitml.tracking import fluent
from gitml.tracking.http_backend import HttpBackend
from gitml.tracking.rest import AccessDenied, RestClient, ServerUnavailable, journal_root
from testing.cli import cli
from testing.procs import child_env, finish, read_until, spawn, wait_stopped
from testing.tracking_server import TrackingServer, tracking_server


@pytest.fixture
def server(repo: Path) -> Iterator[TrackingServer]:
    with tracking_server(repo) as running:
        yield running


def local(repo: Path) -> gitml.Client:
    return gitml.Client(str(repo))


def steps(client: gitml.Client, run_id: str, key: str) -> list[int]:
    return sorted(p.step for p in client.get_metric_history(run_id, key))


def test_an_http_uri_makes_a_client_over_the_http_backend(server: TrackingServer) -> None:
    client = gitml.Client(server.url)
    assert isinstance(client.backend, HttpBackend)
    assert isinstance(RestClient(server.url).backend, HttpBackend)
    assert isinstance(RestClient(server.url), gitml.Client)
    with pytest.raises(InvalidInput, match="RestClient needs an http"):
        RestClient(str(server.repo))
    assert client.remote and not gitml.Client(str(server.repo)).remote
    with pytest.raises(InvalidInput, match="'store' needs a local repository"):
        client.store  # noqa: B018
    with pytest.raises(AttributeError):
        client._no_such_thing  # noqa: B018
    assert not hasattr(client, "_no_such_thing") and not hasattr(client, "store")


def test_fluent_api_end_to_end_over_http(
    server: TrackingServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GITML_TRACKING_URI", server.url)
    gitml.set_experiment("remote-exp")
    with gitml.start_run(run_name="over-http", tags={"k": "v"}) as run:
        gitml.log_params({"alpha": 0.5, "depth": 3})
        for i in range(2500):
            gitml.log_metric("loss", 1 / (i + 1), step=i)
        gitml.log_metrics({"acc": 0.9, "f1": 0.8}, step=1)
        gitml.set_tags({"team": "growth"})
        gitml.log_text("hello", "notes/hello.txt")
        gitml.log_dict({"a": 1}, "config.json")
        (tmp_path / "folder").mkdir()
        (tmp_path / "folder" / "x.bin").write_bytes(b"\x00" * 5000)
        gitml.log_artifacts(tmp_path / "folder", "dir")
        with gitml.start_run(nested=True) as child:
            gitml.log_metric("inner", 1.0)
    run_id = run.info.run_id
    stored = local(server.repo).get_run(run_id)  # committed in the server's repository
    assert stored.status == "FINISHED" and stored.name == "over-http"
    assert stored.params == {"alpha": "0.5", "depth": "3"}
    assert stored.tags == {"k": "v", "team": "growth"}
    assert stored.metrics["loss"].step == 2499 and stored.metrics["acc"].value == 0.9
    assert steps(local(server.repo), run_id, "loss") == list(range(2500))
    exp = local(server.repo).get_experiment(stored.experiment_id)
    assert exp.name == "remote-exp"

    client = gitml.Client(server.url)
    assert [a.path for a in client.list_artifacts(run_id)] == [
        "config.json",
        "dir/x.bin",
        "notes/hello.txt",
    ]
    assert client.read_artifact(run_id, "notes/hello.txt") == b"hello"
    out = client.download_artifacts(run_id, "dir", tmp_path / "down")
    assert (out / "x.bin").read_bytes() == b"\x00" * 5000
    found = gitml.search_runs(filter_string="params.alpha = '0.5'")
    assert [r.id for r in found] == [run_id]
    assert [r.id for r in client.get_child_runs(run_id)] == [child.info.run_id]
    assert client.resolve_run_id(run_id[:8]) == run_id
    assert len(client.list_runs()[0]) == 2


def test_client_methods_over_http(server: TrackingServer) -> None:
    client = gitml.Client(server.url)
    exp_id = client.create_experiment("e1", tags={"a": 1})
    assert client.get_experiment(exp_id).tags == {"a": "1"}
    assert client.get_experiment_by_name("e1") is not None
    assert client.get_or_create_experiment_id("e1") == exp_id
    # The Default experiment, made on first use.
    assert client.get_or_create_experiment_id(None) == "0"
    with pytest.raises(Conflict):
        client.create_experiment("e1")
    run = client.create_run(exp_id, run_name="r")
    client.log_batch(
        run.id,
        metrics=[gitml.Metric("m", float(i), 100 + i, i) for i in range(1500 // 2)],
        params={"p": 1},
        tags=[gitml.RunTag("t", "x")],
    )
    client.log_param(run.id, "p", 1)  # the same value again is fine
    with pytest.raises(Conflict, match="cannot change"):
        client.log_param(run.id, "p", 2)
    client.set_tag(run.id, "gone", "soon")
    client.delete_tag(run.id, "gone")
    client.update_run(run.id, name="renamed")
    client.set_terminated(run.id, "FAILED", end_time=7)
    got = client.get_run(run.id)
    assert (got.name, got.status, got.end_time) == ("renamed", "FAILED", 7)
    assert got.tags == {"t": "x"} and got.params == {"p": "1"}
    history = client.get_metric_history(run.id, "m")
    assert [(p.step, p.timestamp) for p in history[:2]] == [(0, 100), (1, 101)]
    client.delete_run(run.id)
    assert client.search_runs([exp_id]) == []
    assert len(client.search_runs(["e1"], run_view_type="DELETED_ONLY")) == 1
    client.restore_run(run.id)
    assert client.run_counts()[exp_id] == {"active": 1, "deleted": 0}
    client.rename_experiment(exp_id, "e1-renamed")
    client.set_experiment_tag(exp_id, "b", 2)
    client.delete_experiment_tag(exp_id, "a")
    client.delete_experiment(exp_id)
    renamed = client.get_experiment(exp_id)
    assert (renamed.name, renamed.tags, renamed.lifecycle_stage) == (
        "e1-renamed",
        {"b": "2"},
        "deleted",
    )
    assert client.run_counts()[exp_id] == {"active": 0, "deleted": 1}
    client.restore_experiment(exp_id)
    assert client.get_run(run.id).lifecycle_stage == "active"
    with pytest.raises(NotFound, match="is not deleted"):
        client.restore_experiment(exp_id)
    with pytest.raises(NotFound):
        client.get_run("f" * 32)
    with pytest.raises(InvalidInput, match="restoring code needs the repository"):
        client.restore_code(run.id, "anywhere")
    with pytest.raises(InvalidInput, match=r"(?i)metrics\.m|expected|filter"):
        client.search_runs(None, "metrics.m >>> 1")


def test_a_killed_client_is_resent_exactly_once_by_the_next(
    server: TrackingServer, repo: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    env = child_env(GITML_TRACKING_URI=server.url)
    child = spawn(
        f"""
        import os, time, gitml
        client = gitml.Client()
        run = client.create_run()
        client.flush()
        print(run.id, flush=True)
        print("STARTED", flush=True)
        while not os.path.exists({str(go)!r}):
            time.sleep(0.01)
        for i in range(5000):
            client.log_metric(run.id, "m", i, step=i)
        client.log_param(run.id, "done", "yes")
        print("READY", flush=True)
        time.sleep(60)
        """,
        repo,
        env=env,
    )
    assert server.proc is not None
    try:
        run_id = read_until(child, "STARTED", timeout=30)[0]
        # A stopped server accepts the child's first batch and answers nothing: the
        # child dies with every value journaled and none acknowledged, one of them
        # perhaps applied by the server once it runs again.
        server.proc.send_signal(signal.SIGSTOP)
        wait_stopped(server.proc.pid)
        go.touch()
        read_until(child)
        child.send_signal(signal.SIGKILL)
        finish(child)
    finally:
        child.kill()
        server.proc.send_signal(signal.SIGCONT)
    # What the dead process journaled, the next client sends; the server keeps one copy.
    recovering = spawn(
        "import json, gitml; c = gitml.Client(); c.flush(); print(json.dumps(c.recovered))",
        repo,
        env=env,
    )
    code, out, err = finish(recovering)
    assert code == 0, err
    (report,) = json.loads(out)
    assert report.endswith(": resent 5001 values"), report
    history = local(repo).get_metric_history(run_id, "m")
    assert sorted(p.step for p in history) == list(range(5000))  # each point once
    assert local(repo).get_run(run_id).params == {"done": "yes"}
    assert list(journal_root(server.url).glob("*.log")) == []


@pytest.mark.slow
def test_a_server_that_goes_away_and_comes_back_loses_nothing(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = TrackingServer(repo)
    server.start()
    try:
        monkeypatch.setenv("GITML_HTTP_RETRY_SECONDS", "2")
        client = gitml.Client(server.url)
        run = client.create_run(run_name="outage")
        for i in range(1000):
            client.log_metric(run.id, "m", i, step=i)
        client.flush()
        server.stop(signal.SIGKILL)
        for i in range(1000, 3000):
            client.log_metric(run.id, "m", i, step=i)  # journaled; the sender keeps trying
        with pytest.raises(ServerUnavailable):
            client.flush()
        server.start()
        for i in range(3000, 4000):
            client.log_metric(run.id, "m", i, step=i)
        client.set_terminated(run.id)
    finally:
        server.stop()
    assert steps(local(repo), run.id, "m") == list(range(4000))
    assert local(repo).get_run(run.id).status == "FINISHED"


def test_a_client_killed_while_the_server_is_down_is_recovered_after(
    repo: Path, tmp_path: Path
) -> None:
    server = TrackingServer(repo)
    server.start()
    go = tmp_path / "go"
    env = child_env(GITML_TRACKING_URI=server.url)
    child = spawn(
        f"""
        import os, time, gitml
        client = gitml.Client()
        run = client.create_run()
        print(run.id, flush=True)
        print("STARTED", flush=True)
        while not os.path.exists({str(go)!r}):
            time.sleep(0.01)
        for i in range(3000):
            client.log_metric(run.id, "m", i, step=i)
        print("READY", flush=True)
        time.sleep(60)
        """,
        repo,
        env=env,
    )
    try:
        run_id = read_until(child, "STARTED", timeout=30)[0]
        server.stop(signal.SIGKILL)
        go.touch()
        read_until(child)
        child.kill()
        finish(child)
        server.start()
        recovering = RestClient(server.url)
        recovering.flush()
        assert recovering.recovered and "resent 3000 values" in recovering.recovered[0]
    finally:
        child.kill()
        server.stop()
    assert steps(local(repo), run_id, "m") == list(range(3000))


def test_tokens_and_the_cli_tracking_uri(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("r-token read\nw-token write\n")
    with tracking_server(repo, "--token-file", str(tokens)) as server:
        with pytest.raises(AccessDenied, match="GITML_TRACKING_TOKEN"):
            gitml.Client(server.url).list_experiments()
        monkeypatch.setenv("GITML_TRACKING_TOKEN", "r-token")
        reader = gitml.Client(server.url)
        assert reader.list_experiments() == []
        with pytest.raises(AccessDenied, match="403"):
            reader.create_run()
        monkeypatch.setenv("GITML_TRACKING_TOKEN", "w-token")
        writer = gitml.Client(server.url)
        run = writer.create_run(run_name="cli-visible")
        writer.log_metric(run.id, "rmse", 0.5)
        writer.set_terminated(run.id)

        listed = cli("runs", "list", "--json", "--tracking-uri", server.url)
        assert [r["id"] for r in json.loads(listed.stdout)] == [run.id]
        found = cli("runs", "search", "metrics.rmse < 1", "--tracking-uri", server.url)
        assert run.id[:8] in found.stdout
        shown = cli("runs", "show", run.id[:8], "--json", "--tracking-uri", server.url)
        assert json.loads(shown.stdout)["id"] == run.id
        exps = cli("experiments", "list", "--json", "--tracking-uri", server.url)
        assert json.loads(exps.stdout)[0]["runs"] == {"active": 1, "deleted": 0}
        monkeypatch.setenv("GITML_TRACKING_URI", server.url)
        assert cli("runs", "list").exit_code == 0


def test_the_server_refuses_to_bind_beyond_loopback_without_tokens(repo: Path) -> None:
    result = cli("server", "--repo", str(repo), "--host", "0.0.0.0", ok=False)
    assert result.exit_code == 1
    assert "--token-file" in result.stderr


def test_log_metric_costs_microseconds(server: TrackingServer) -> None:
    """At most 50 µs a call amortized (benchmarks/server.py measures it properly)."""
    import time

    client = gitml.Client(server.url)
    run = client.create_run()
    start = time.perf_counter()
    for i in range(20_000):
        client.log_metric(run.id, "m", float(i), step=i)
    per_call = (time.perf_counter() - start) / 20_000
    client.flush()
    assert len(client.get_metric_history(run.id, "m")) == 20_000
    assert per_call < 200e-6  # generous: CI machines are shared; the benchmark holds 50 µs
    fluent.set_tracking_uri(None)
    os.environ.pop("GITML_TRACKING_URI", None)


def test_the_server_without_fastapi_says_how_to_get_it(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if it were not installed
    for name in [m for m in sys.modules if m.startswith("gitml.server.")]:
        monkeypatch.delitem(sys.modules, name)
    result = cli("server", "--repo", str(repo), ok=False)
    assert result.exit_code == 1
    assert "pip install 'gitml[server]'" in result.stderr


def test_two_workers_apply_each_batch_once(repo: Path) -> None:
    with tracking_server(repo, "--workers", "2") as server:
        clients = [gitml.Client(server.url) for _ in range(3)]
        run = clients[0].create_run()
        for n, client in enumerate(clients):
            for i in range(n * 1500, (n + 1) * 1500):
                client.log_metric(run.id, "m", float(i), step=i)
        for client in clients:
            client.flush()
        assert steps(clients[0], run.id, "m") == list(range(4500))


def test_nan_and_infinities_cross_http_both_ways(server: TrackingServer) -> None:
    client = gitml.Client(server.url)
    run = client.create_run(run_name="odd-values")
    values = {"nan": math.nan, "inf": math.inf, "ninf": -math.inf, "one": 1.0}
    for step, (key, value) in enumerate(values.items()):
        client.log_metric(run.id, key, value, step=step)
    client.flush()
    for reader in (client, local(server.repo)):
        got = reader.get_run(run.id).metrics
        assert math.isnan(got["nan"].value)
        assert (got["inf"].value, got["ninf"].value, got["one"].value) == (
            math.inf,
            -math.inf,
            1.0,
        )
    (found,) = client.search_runs(filter_string="metrics.one = 1")
    assert math.isnan(found.metrics["nan"].value) and found.metrics["ninf"].value == -math.inf
    (point,) = client.get_metric_history(run.id, "inf")
    assert point.value == math.inf and point.step == 1
    (point,) = client.get_metric_history(run.id, "nan")
    assert math.isnan(point.value)
    # On the wire, as MLflow's REST API writes them: strings, never null.
    raw = httpx2.get(f"{server.url}/api/v1/runs/{run.id}").json()["metrics"]
    assert [raw[k]["value"] for k in values] == ["NaN", "Infinity", "-Infinity", 1.0]
    sent = httpx2.post(
        f"{server.url}/api/v1/runs/{run.id}/log-batch",
        json={"metrics": [{"key": "mlflow", "value": "-Infinity", "step": 0, "timestamp": 1}]},
    )
    assert sent.status_code == 200, sent.text
    assert client.get_run(run.id).metrics["mlflow"].value == -math.inf
    refused = httpx2.post(
        f"{server.url}/api/v1/runs/{run.id}/log-batch",
        json={"metrics": [{"key": "word", "value": "nan", "step": 0, "timestamp": 1}]},
    )
    assert refused.status_code == 400
