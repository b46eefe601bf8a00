"""Both tracking backends behind ``gitml.Client``: the same scenario over a repository
(``GitBackend``) and over a real ``gitml server`` on 127.0.0.1 (``HttpBackend``)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

import gitml
from gitml.errors import Conflict, InvalidInput, NotFound
from gitml.tracking.backend import TrackingBackend
from gitml.tracking.client import NeedsRepository
from gitml.tracking.git_backend import RUNS, GitBackend
from gitml.tracking.http_backend import HttpBackend
from testing.tracking_server import tracking_server


@pytest.fixture(params=["git", "http"])
def client(request: pytest.FixtureRequest, repo: Path) -> Iterator[gitml.Client]:
    """A client of ``repo`` itself, or of a gitml server that serves ``repo``."""
    if request.param == "git":
        local = gitml.Client(str(repo))
        yield local
        local.close()
        return
    with tracking_server(repo) as server:
        remote = gitml.Client(server.url)
        yield remote
        remote.close()


def test_each_backend_is_a_tracking_backend(client: gitml.Client) -> None:
    backend: TrackingBackend = client.backend  # mypy checks the protocol statically
    assert isinstance(backend, HttpBackend if client.remote else GitBackend)
    missing = [
        name
        for name in dir(TrackingBackend)
        if not name.startswith("_") and not hasattr(backend, name)
    ]
    assert missing == []


def test_the_same_scenario_behaves_the_same_on_both_backends(
    client: gitml.Client, repo: Path, tmp_path: Path
) -> None:
    exp_id = client.create_experiment("exp", tags={"team": 7})
    assert client.get_experiment(exp_id).tags == {"team": "7"}
    assert client.get_or_create_experiment_id("exp") == exp_id
    assert client.find_experiment_id("exp") == exp_id
    with pytest.raises(Conflict):
        client.create_experiment("exp")
    with pytest.raises(NotFound):
        client.find_experiment_id("no-such-experiment")
    assert [e.name for e in client.list_experiments()] == ["exp"]

    run = client.create_run(exp_id, run_name="first", tags={"k": "v"})
    client.log_metric(run.id, "loss", 0.5, step=2)
    client.log_metric(run.id, "loss", 0.7, step=1)
    client.log_param(run.id, "alpha", 0.1)
    client.set_tag(run.id, "phase", "train")
    client.log_batch(
        run.id,
        metrics=[gitml.Metric("nan", math.nan, 5, 0)],
        params={"depth": 3},
        tags=[gitml.RunTag("extra", "x")],
    )
    with pytest.raises(Conflict, match="param 'alpha'"):
        client.log_param(run.id, "alpha", 0.2)
    with pytest.raises(InvalidInput, match="metric key"):
        client.log_metric(run.id, "bad\tkey", 1.0)

    stored = client.get_run(run.id)
    assert stored.name == "first" and stored.status == "RUNNING"
    assert stored.params == {"alpha": "0.1", "depth": "3"}
    assert stored.tags == {"k": "v", "phase": "train", "extra": "x"}
    assert stored.metrics["loss"].value == 0.5 and math.isnan(stored.metrics["nan"].value)
    history = client.get_metric_history(run.id, "loss")
    assert [(p.step, p.value) for p in history] == [(1, 0.7), (2, 0.5)]
    with pytest.raises(NotFound):
        client.get_metric_history(run.id, "never-logged")

    client.log_text(run.id, "hello", "notes/hello.txt")
    client.log_dict(run.id, {"a": 1}, "config.json")
    assert [a.path for a in client.list_artifacts(run.id)] == ["config.json", "notes/hello.txt"]
    assert [a.path for a in client.list_artifacts(run.id, "notes")] == ["notes/hello.txt"]
    assert client.read_artifact(run.id, "notes/hello.txt") == b"hello"
    with pytest.raises(NotFound):
        client.read_artifact(run.id, "missing.txt")
    fetched = client.download_artifacts(run.id, "notes", tmp_path / "down")
    assert (fetched / "hello.txt").read_text() == "hello"

    child = client.create_run(exp_id, parent_run_id=run.id)
    assert [r.id for r in client.get_child_runs(run.id)] == [child.id]
    assert client.resolve_run_id(run.id[:10]) == run.id

    client.update_run(run.id, name="renamed")
    client.delete_tag(run.id, "phase")
    with pytest.raises(NotFound):
        client.delete_tag(run.id, "phase")
    client.set_terminated(run.id, "FAILED", end_time=123)
    ended = client.get_run(run.id)
    assert (ended.name, ended.status, ended.end_time) == ("renamed", "FAILED", 123)
    assert "phase" not in ended.tags
    with pytest.raises(InvalidInput, match="status"):
        client.set_terminated(run.id, "DONE")

    found = client.search_runs(["exp"], "params.depth = '3'")
    assert [r.id for r in found] == [run.id]
    client.delete_run(run.id)
    assert client.search_runs(["exp"], "params.depth = '3'") == []
    assert run.id in [r.id for r in client.list_runs([exp_id], include_deleted=True)[0]]
    assert run.id not in [r.id for r in client.list_runs([exp_id])[0]]
    client.restore_run(run.id)
    assert client.run_counts()[exp_id] == {"active": 2, "deleted": 0}

    # A batch with an id lands in one commit that names it.
    client.log_batch(run.id, params={"late": "yes"}, batch_id="batch-1")
    local = gitml.Client(str(repo))
    assert local.get_run(run.id).params["late"] == "yes"
    tip = local.store.tip(RUNS + run.id)
    assert tip is not None
    assert "Gitml-Journal: batch-1" in local.store.commit_info(tip).message


def test_what_needs_the_repository_is_refused_over_http_only(client: gitml.Client) -> None:
    if client.remote:
        with pytest.raises(NeedsRepository, match="'index' needs a local repository"):
            client.index  # noqa: B018
        assert not hasattr(client, "config")
        with pytest.raises(InvalidInput, match="needs the repository itself"):
            client.restore_code("0" * 32, "anywhere")
    else:
        assert client.config.experiment and client.store.tip(RUNS + "0" * 32) is None
