"""The fluent API (``gitml.start_run``, ``gitml.log_metric``…) in one process."""

from __future__ import annotations

from pathlib import Path

import pytest

import gitml
from testing.git import git, init_repo
from testing.mlflow_server import needs_mlflow


def test_start_run_as_context_manager_finishes(repo: Path) -> None:
    with gitml.start_run(run_name="baseline", tags={"team": "growth"}) as run:
        assert gitml.active_run() is run
        gitml.log_param("lr", 0.01)
        gitml.log_params({"depth": 6, "loss": "mse"})
        gitml.log_metric("loss", 0.5, step=1)
        gitml.log_metrics({"acc": 0.9, "f1": 0.8}, step=2)
        gitml.set_tag("stage", "dev")
        gitml.set_tags({"owner": "me"})
        assert gitml.last_active_run_id() == run.run_id
    assert gitml.active_run() is None
    got = gitml.get_run(run.run_id)
    assert got.status == "FINISHED"
    assert got.end_time is not None
    assert got.name == "baseline"
    assert got.params == {"lr": "0.01", "depth": "6", "loss": "mse"}
    assert got.tags == {"team": "growth", "stage": "dev", "owner": "me"}
    assert {k: (m.value, m.step) for k, m in got.metrics.items()} == {
        "loss": (0.5, 1),
        "acc": (0.9, 2),
        "f1": (0.8, 2),
    }
    # What was committed is in Git, on the run's ref.
    assert git(repo, "rev-parse", "--verify", f"refs/gitml/runs/{run.run_id}").strip()


def test_exception_inside_the_block_fails_the_run(repo: Path) -> None:
    with pytest.raises(ValueError, match="boom"), gitml.start_run() as run:
        gitml.log_metric("loss", 1.0)
        raise ValueError("boom")
    got = gitml.get_run(run.run_id)
    assert got.status == "FAILED"
    assert got.metrics["loss"].value == 1.0  # logged before the failure, kept
    assert gitml.active_run() is None


def test_keyboard_interrupt_kills_the_run(repo: Path) -> None:
    with pytest.raises(KeyboardInterrupt), gitml.start_run() as run:
        raise KeyboardInterrupt
    assert gitml.get_run(run.run_id).status == "KILLED"


def test_nested_runs_record_their_parent(repo: Path) -> None:
    with gitml.start_run() as parent:
        with gitml.start_run(nested=True) as child:
            assert gitml.active_run() is child
            gitml.log_metric("inner", 1.0)
        assert gitml.active_run() is parent
        gitml.log_metric("outer", 2.0)
    child_run = gitml.get_run(child.run_id)
    parent_run = gitml.get_run(parent.run_id)
    assert child_run.parent_run_id == parent.run_id
    assert parent_run.parent_run_id is None
    assert set(child_run.metrics) == {"inner"}
    assert set(parent_run.metrics) == {"outer"}
    assert child_run.status == parent_run.status == "FINISHED"


def test_start_run_while_active_needs_nested(repo: Path) -> None:
    with gitml.start_run() as run:
        with pytest.raises(gitml.InvalidInput, match=run.run_id):
            gitml.start_run()
        assert gitml.active_run() is run
    assert gitml.get_run(run.run_id).status == "FINISHED"


def test_resume_a_run_by_id(repo: Path) -> None:
    with gitml.start_run() as first:
        gitml.log_metric("loss", 1.0, step=0)
    assert gitml.get_run(first.run_id).status == "FINISHED"
    with gitml.start_run(run_id=first.run_id[:8]) as again:
        assert again.run_id == first.run_id
        during = gitml.get_run(first.run_id)
        assert during.status == "RUNNING"
        assert during.end_time is None
        gitml.log_metric("loss", 0.5, step=1)
    got = gitml.get_run(first.run_id)
    assert got.status == "FINISHED"
    history = gitml.Client().get_metric_history(first.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5)]


def test_logging_without_a_run_starts_one(repo: Path) -> None:
    assert gitml.active_run() is None
    gitml.log_metric("loss", 0.25)
    active = gitml.active_run()
    assert active is not None
    gitml.log_param("p", 1)
    gitml.end_run()
    assert gitml.active_run() is None
    got = gitml.get_run(active.run_id)
    assert got.status == "FINISHED"
    assert got.params == {"p": "1"}
    gitml.end_run()  # no active run: a no-op


def test_end_run_with_status(repo: Path) -> None:
    run = gitml.start_run()
    gitml.end_run("KILLED")
    assert gitml.get_run(run.run_id).status == "KILLED"


def test_set_experiment(repo: Path) -> None:
    exp = gitml.set_experiment("churn")
    assert exp.name == "churn"
    with gitml.start_run() as run:
        pass
    assert gitml.get_run(run.run_id).experiment_id == exp.id
    assert gitml.set_experiment("churn").id == exp.id  # existing: reused
    with gitml.start_run(experiment_id="0") as other:
        pass
    assert gitml.get_run(other.run_id).experiment_id == "0"
    names = [e.name for e in gitml.Client().list_experiments()]
    assert sorted(names) == ["Default", "churn"]


def test_experiment_from_environment(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITML_EXPERIMENT_NAME", "from-env")
    with gitml.start_run() as run:
        pass
    exp = gitml.Client().get_experiment_by_name("from-env")
    assert exp is not None
    assert gitml.get_run(run.run_id).experiment_id == exp.id


def test_active_run_info(repo: Path) -> None:
    with gitml.start_run() as run:
        active = gitml.active_run()
        assert active is not None
        info = active.info
        assert info.run_id == run.run_id
        assert info.status == "RUNNING"


def _active_info_in_mlflow(tmp_path: Path) -> tuple[str, int | None, str]:
    """What MLflow's own ActiveRun.info says after its ``with`` block."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        with mlflow.start_run(run_name="short") as run:
            assert run.info.run_name == "short"
            mlflow.log_param("lr", 0.1)
        return run.info.status, run.info.end_time, mlflow.get_run(run.info.run_id).info.status
    finally:
        mlflow.set_tracking_uri(None)


@needs_mlflow
@pytest.mark.slow  # MLflow's import alone takes 10 s and more on a busy machine
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # MLflow's SQLAlchemy calls
def test_reading_the_active_runs_info_commits_nothing_and_holds_the_start_as_mlflow(
    repo: Path, tmp_path: Path
) -> None:
    with gitml.start_run(run_name="short") as run:
        assert run.info.run_name == "short"  # a script's run.info.run_id, say
        gitml.log_param("lr", 0.1)
    code = git(repo, "rev-parse", "HEAD").strip()
    commits = git(repo, "rev-list", f"refs/gitml/runs/{run.run_id}", f"^{code}").split()
    assert len(commits) == 1  # a short run is one commit, even with its info read
    ours = (run.info.status, run.info.end_time, gitml.get_run(run.run_id).info.status)
    assert ours == _active_info_in_mlflow(tmp_path) == ("RUNNING", None, "FINISHED")


def test_log_figure_stores_a_png(repo: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [2, 1, 0])
    try:
        with gitml.start_run() as run:
            gitml.log_figure(fig, "plots/loss.png")
            gitml.log_figure(fig, "plots/loss.svg")
            with pytest.raises(gitml.InvalidInput, match="Figure"):
                gitml.log_figure("not a figure", "x.png")
    finally:
        plt.close(fig)
    client = gitml.Client()
    listed = {a.path: a for a in client.list_artifacts(run.run_id)}
    assert set(listed) == {"plots/loss.png", "plots/loss.svg"}
    png = client.read_artifact(run.run_id, "plots/loss.png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert listed["plots/loss.png"].size == len(png)
    assert b"<svg" in client.read_artifact(run.run_id, "plots/loss.svg")


def test_log_artifacts_text_and_dict(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("file")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "g.txt").write_text("dir file")
    with gitml.start_run() as run:
        gitml.log_artifact(tmp_path / "f.txt")
        gitml.log_artifacts(tmp_path / "d", "dir")
        gitml.log_text("text", "notes.txt")
        gitml.log_dict({"a": 1}, "conf.yaml")
    client = gitml.Client()
    assert [a.path for a in client.list_artifacts(run.run_id)] == [
        "conf.yaml",
        "dir/g.txt",
        "f.txt",
        "notes.txt",
    ]
    assert client.read_artifact(run.run_id, "dir/g.txt") == b"dir file"


def test_set_tracking_uri_to_a_bare_repo(repo: Path, tmp_path: Path) -> None:
    bare = init_repo(tmp_path / "records.git", bare=True)
    gitml.set_tracking_uri(bare)
    assert gitml.get_tracking_uri() == str(bare)
    with gitml.start_run() as run:
        gitml.log_metric("loss", 0.1)
    ref = f"refs/gitml/runs/{run.run_id}"
    assert git(bare, "for-each-ref", "--format=%(refname)", "refs/gitml/runs/").strip() == ref
    assert git(repo, "for-each-ref", "refs/gitml/") == ""
    code = git(repo, "rev-parse", "HEAD").strip()
    assert code in git(bare, "log", "--format=%H", ref).split()
    gitml.set_tracking_uri(None)
    assert gitml.get_tracking_uri() is None
    with pytest.raises(gitml.NotFound):
        gitml.get_run(run.run_id)  # back to the work repository, which has no such run


def test_tracking_uri_from_environment_is_reported(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = init_repo(tmp_path / "records.git", bare=True)
    monkeypatch.setenv("GITML_TRACKING_URI", str(bare))
    assert gitml.get_tracking_uri() == str(bare)
    with gitml.start_run() as run:
        pass
    assert git(bare, "rev-parse", "--verify", f"refs/gitml/runs/{run.run_id}").strip()
