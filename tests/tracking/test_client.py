"""``gitml.Client`` against real repositories, checked with the real ``git`` CLI."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

import gitml
from testing import procs
from testing.cli import gitml_exe
from testing.git import FixedClock, commit_file_on_ref, fsck, init_repo
from testing.git import git as _git
from testing.mlflow_ref import mlflow_answer
from testing.mlflow_server import needs_mlflow
from testing.procs import child_env, write_config

RUNS = "refs/gitml/runs/"


def git(cwd: Path, *args: str) -> str:
    return _git(cwd, *args).strip()


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD")


def first_parent_log(repo: Path, ref: str) -> list[tuple[str, list[str]]]:
    """(commit, parents) of ``git log --first-parent ref``, newest first."""
    out = git(repo, "log", "--first-parent", "--format=%H%x20%P", ref)
    rows = []
    for line in out.splitlines():
        sha, *parents = line.split()
        rows.append((sha, parents))
    return rows


def is_ancestor(repo: Path, ancestor: str, descendant: str) -> bool:
    done = subprocess.run(
        ["git", "merge-base", "--is-ancestor", ancestor, descendant], cwd=repo, check=False
    )
    assert done.returncode in (0, 1), "git merge-base failed"
    return done.returncode == 0


def show(repo: Path, ref: str, path: str) -> str:
    return _git(repo, "show", f"{ref}:{path}")


def all_refs(repo: Path) -> str:
    return git(repo, "for-each-ref", "--format=%(refname) %(objectname)")


# -- experiments ------------------------------------------------------------------


def test_create_experiment_conflicts_on_duplicate_name(repo: Path) -> None:
    client = gitml.Client()
    exp_id = client.create_experiment("churn", tags={"team": "growth"})
    with pytest.raises(gitml.Conflict, match="churn"):
        client.create_experiment("churn")
    exp = client.get_experiment(exp_id)
    assert (exp.name, exp.tags) == ("churn", {"team": "growth"})
    assert client.get_experiment_by_name("churn") == exp
    assert [e.name for e in client.list_experiments()] == ["churn"]
    assert git(repo, "for-each-ref", "--format=%(refname)", "refs/gitml/experiments/") == (
        f"refs/gitml/experiments/{exp_id}"
    )


def test_experiment_id_is_the_same_on_every_machine(repo: Path, tmp_path: Path) -> None:
    here = gitml.Client().create_experiment("churn")
    other = init_repo(tmp_path / "other")
    there = gitml.Client(tracking_uri=str(other)).create_experiment("churn")
    assert here == there
    assert gitml.Client().create_experiment("churn-2") != here


def create_at_once(clients: list[gitml.Client], name: str) -> list[str]:
    """Every client's ``get_or_create_experiment_id(name)``, all started together."""
    start = threading.Barrier(len(clients))
    got: list[str] = []
    failed: list[BaseException] = []

    def create(client: gitml.Client) -> None:
        start.wait()
        try:
            got.append(client.get_or_create_experiment_id(name))
        except BaseException as exc:  # reported below, not lost in the thread
            failed.append(exc)

    threads = [threading.Thread(target=create, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failed == []
    return got


def test_clients_creating_one_experiment_at_once_all_get_its_id(repo: Path) -> None:
    # Each thread's client looks the name up, finds nothing and creates it: all but
    # one find it created by another between the look-up and their own creation.
    clients = [gitml.Client(str(repo)) for _ in range(8)]
    for name in [f"sweep-{n}" for n in range(25)]:
        got = create_at_once(clients, name)
        assert len(set(got)) == 1 and len(got) == len(clients)
        assert gitml.Client(str(repo)).get_experiment(got[0]).name == name


def test_experiment_rename_tags_delete_and_restore_are_commits_on_its_record(
    repo: Path,
) -> None:
    client = gitml.Client(str(repo))
    exp_id = client.create_experiment("e", tags={"a": "1"})
    kept = client.create_run(exp_id, run_name="kept").id
    deleted_before = client.create_run(exp_id, run_name="deleted before").id
    client.delete_run(deleted_before)
    client.rename_experiment(exp_id, "e2")
    client.set_experiment_tag(exp_id, "b", "2")
    client.delete_experiment_tag(exp_id, "a")
    with pytest.raises(gitml.NotFound, match="no tag 'a'"):
        client.delete_experiment_tag(exp_id, "a")
    client.delete_experiment(exp_id)
    assert client.get_run(kept).lifecycle_stage == "deleted"
    assert client.search_runs([exp_id]) == []
    with pytest.raises(gitml.InvalidInput, match="is deleted"):
        client.create_run(exp_id)
    with pytest.raises(gitml.InvalidInput, match="is deleted"):
        client.set_experiment_tag(exp_id, "c", "3")
    # Deleted, its name stays taken, as in MLflow.
    with pytest.raises(gitml.Conflict, match="deleted"):
        client.create_experiment("e2")
    # Restoring brings back every deleted run of it (MLflow's rule).
    client.restore_experiment(exp_id)
    assert {r.name for r in client.search_runs([exp_id])} == {"kept", "deleted before"}
    experiment = client.get_experiment(exp_id)
    assert (experiment.name, experiment.tags, experiment.lifecycle_stage) == (
        "e2",
        {"b": "2"},
        "active",
    )
    assert experiment.last_update_time is not None
    assert git(repo, "log", "--format=%s", f"refs/gitml/experiments/{exp_id}").splitlines() == [
        "gitml: restore experiment e2",
        "gitml: delete experiment e2",
        "gitml: update the tags of experiment e2",
        "gitml: update the tags of experiment e2",
        "gitml: rename experiment e to e2",
        "gitml: create experiment e",
    ]
    # The old name is free: a new experiment, with an id of its own.
    again = client.create_experiment("e")
    assert again != exp_id and client.get_experiment(again).name == "e"
    with pytest.raises(gitml.Conflict, match="already exists"):
        client.rename_experiment(again, "e2")
    with pytest.raises(gitml.InvalidInput, match="default experiment"):
        client.delete_experiment("0")


def test_an_experiment_renamed_by_another_process_is_seen_by_its_name(repo: Path) -> None:
    reader = gitml.Client(str(repo))
    exp_id = reader.get_or_create_experiment_id("old")
    assert reader.get_experiment(exp_id).name == "old"
    gitml.Client(str(repo)).rename_experiment(exp_id, "new")
    assert reader.get_experiment(exp_id).name == "new"
    assert reader.get_or_create_experiment_id("old") != exp_id


def test_create_experiment_rejects_blank_name(repo: Path) -> None:
    with pytest.raises(gitml.InvalidInput):
        gitml.Client().create_experiment("  ")


def test_get_unknown_experiment_is_not_found(repo: Path) -> None:
    with pytest.raises(gitml.NotFound):
        gitml.Client().get_experiment("nope")


# -- runs and lineage ---------------------------------------------------------------


def test_create_run_records_clean_source_and_parents_on_code(repo: Path) -> None:
    code = head(repo)
    client = gitml.Client()
    run = client.create_run(run_name="baseline", tags={"team": "growth"}, commit=True)
    assert run.source.commit == code
    assert run.source.branch == "main"
    assert run.source.dirty is False
    assert run.source.snapshot is None
    assert (run.name, run.status, run.tags) == ("baseline", "RUNNING", {"team": "growth"})
    assert run.experiment_id == "0"  # the Default experiment
    assert len(run.id) == 32

    ref = RUNS + run.id
    log = first_parent_log(repo, ref)
    # The run's single commit sits directly on the code commit.
    assert log[0][1] == [code]
    assert [sha for sha, _ in log[1:]] == [code]
    assert is_ancestor(repo, code, ref)
    assert yaml.safe_load(show(repo, ref, "run.yaml"))["source"]["commit"] == code
    # Nothing in the work tree, index or branches moved.
    assert head(repo) == code
    assert git(repo, "status", "--porcelain") == ""


def test_run_commits_stack_on_the_first_one(repo: Path) -> None:
    code = head(repo)
    client = gitml.Client()
    run = client.create_run(commit=True)
    client.log_param(run.id, "lr", 0.1)
    client.set_terminated(run.id)
    log = first_parent_log(repo, RUNS + run.id)
    assert len(log) == 3  # start, end, code
    assert log[-1][0] == code
    assert log[-2][1] == [code]
    messages = git(repo, "log", "--format=%s", f"{code}..{RUNS}{run.id}").splitlines()
    assert all(m.startswith("gitml: ") for m in messages)


def test_a_short_run_is_one_commit_on_the_code(repo: Path) -> None:
    """``create_run`` journals the run; its first flush commits it with what was
    logged, so a run created, logged to and ended is one commit (MLflow's
    client pattern), not two."""
    code = head(repo)
    client = gitml.Client()
    run = client.create_run(run_name="short")
    client.log_param(run.id, "lr", 0.1)
    assert git(repo, "for-each-ref", RUNS) == ""  # journaled only, so far
    client.set_terminated(run.id)
    assert first_parent_log(repo, RUNS + run.id)[0][1] == [code]
    subject = git(repo, "log", "-1", "--format=%s", RUNS + run.id)
    assert subject == (
        f"gitml: start run {run.id[:12]} (short); end run {run.id[:12]} as FINISHED; "
        "log 1 params, 0 tags"
    )
    assert client.get_run(run.id).params == {"lr": "0.1"}
    assert journal_files(repo) == []


READER = """
import json, sys
import gitml

run_id = sys.argv[1]
client = gitml.Client()
found = [r.id for r in client.search_runs(filter_string="attributes.run_name = 'shared'")]
run = client.get_run(run_id)
client.log_metric(run_id, "loss", 0.5, step=1, timestamp=7)
client.set_tag(run_id, "seen", "yes")
client.close()
print(json.dumps({"found": found, "status": run.status, "params": run.params}))
"""


def test_a_run_just_created_is_seen_by_another_process_which_commits_its_start(
    repo: Path,
) -> None:
    """As MLflow's store shows a run once ``create_run`` returns, so does every gitml
    reader: one in another process commits the journaled start, and the writer's
    own flush adds what it logged on top, losing nothing of either."""
    write_config(repo, flush_interval=3600)  # no background flush during the test
    client = gitml.Client()
    run = client.create_run(run_name="shared")
    code = run.source.snapshot or run.source.commit
    client.log_param(run.id, "lr", 0.1)
    child = subprocess.run(
        [sys.executable, "-c", READER, run.id],
        cwd=repo,
        env=child_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    # The run as it started: the param is still the writer's to commit.
    assert json.loads(child.stdout) == {"found": [run.id], "status": "RUNNING", "params": {}}
    client.log_param(run.id, "depth", 3)
    client.set_terminated(run.id)
    final = gitml.Client().get_run(run.id)
    assert (final.status, final.params, final.tags) == (
        "FINISHED",
        {"lr": "0.1", "depth": "3"},
        {"seen": "yes"},
    )
    assert final.metrics["loss"].value == 0.5
    subjects = git(repo, "log", "--first-parent", "--format=%s", f"{code}..{RUNS}{run.id}")
    assert subjects.splitlines() == [
        f"gitml: end run {run.id[:12]} as FINISHED; log 2 params, 0 tags",
        f"gitml: log 1 metric points; log 0 params, 1 tags to run {run.id[:12]}",
        f"gitml: start run {run.id[:12]} (shared)",
    ]
    assert journal_files(repo) == []


CREATE_THEN_READ = """
import json, subprocess, sys

if sys.argv[1] == "mlflow":
    from mlflow import MlflowClient as Client
else:
    from gitml import Client
client = Client()
run = client.create_run("0", run_name="shared")
# Another process reads the run while its creator still holds it, not ended.
reader = '''
import json, sys
if sys.argv[1] == "mlflow":
    from mlflow import MlflowClient as Client
else:
    from gitml import Client
client, run_id = Client(), sys.argv[2]
info = client.get_run(run_id).info
print(json.dumps({
    "found": [r.info.run_id for r in client.search_runs(["0"])] == [run_id],
    "info": [info.run_name, info.status, info.lifecycle_stage, info.end_time, info.experiment_id],
}))
'''
seen = subprocess.run(
    [sys.executable, "-c", reader, sys.argv[1], run.info.run_id],
    capture_output=True, text=True, check=True,
).stdout
client.set_terminated(run.info.run_id)
print(seen.strip().splitlines()[-1])
"""


@needs_mlflow
@pytest.mark.slow  # MLflow's import alone takes 10 s and more on a busy machine
def test_a_run_just_created_is_seen_by_another_process_as_mlflow_shows_it(
    repo: Path, tmp_path: Path
) -> None:
    theirs = mlflow_answer(CREATE_THEN_READ, tmp_path, "mlflow")
    done = procs.run(CREATE_THEN_READ, repo, "gitml", env=child_env())
    assert done.returncode == 0, done.stderr
    ours = json.loads(done.stdout.strip().splitlines()[-1])
    assert ours == theirs == {"found": True, "info": ["shared", "RUNNING", "active", None, "0"]}


def test_a_start_another_reader_committed_is_not_committed_again(repo: Path) -> None:
    creator, reader = gitml.Client(), gitml.Client()  # two writers, as two processes are
    run = creator.create_run(run_name="read early")
    assert [r.id for r in reader.search_runs()] == [run.id]
    tip = git(repo, "rev-parse", RUNS + run.id)
    assert git(repo, "log", "-1", "--format=%s", tip) == (
        f"gitml: start run {run.id[:12]} (read early)"
    )
    creator.close()  # its journal held only the start: no second, empty commit
    assert git(repo, "rev-parse", RUNS + run.id) == tip
    assert journal_files(repo) == []


def test_dirty_tree_snapshot_is_between_run_and_head(repo: Path) -> None:
    code = head(repo)
    (repo / "train.py").write_text("print('tuned')\n")
    run = gitml.Client().create_run(commit=True)
    assert run.source.dirty is True
    assert run.source.commit == code
    snap = run.source.snapshot
    assert snap is not None and snap != code

    log = first_parent_log(repo, RUNS + run.id)
    shas = [sha for sha, _ in log]
    assert shas[1] == snap  # the run's first commit has the snapshot as parent
    assert shas[2] == code  # ... whose parent is HEAD
    assert log[1][1] == [code]
    assert show(repo, snap, "train.py") == "print('tuned')\n"
    # The user's index and work tree are untouched.
    assert git(repo, "diff", "--cached", "--name-only") == ""
    assert (repo / "train.py").read_text() == "print('tuned')\n"
    assert head(repo) == code


def test_staged_change_is_dirty_too(repo: Path) -> None:
    (repo / "model.py").write_text("W = 1\n")
    git(repo, "add", "model.py")
    run = gitml.Client().create_run()
    assert run.source.dirty
    assert run.source.snapshot is not None
    assert show(repo, run.source.snapshot, "model.py") == "W = 1\n"


def test_create_run_in_named_experiment_and_parent(repo: Path) -> None:
    client = gitml.Client()
    parent = client.create_run("churn")  # created by name on first use
    child = client.create_run("churn", parent_run_id=parent.id, start_time=1234)
    exp = client.get_experiment_by_name("churn")
    assert exp is not None
    assert parent.experiment_id == child.experiment_id == exp.id
    assert child.parent_run_id == parent.id
    assert child.start_time == 1234
    with pytest.raises(gitml.NotFound):
        client.create_run(parent_run_id="f" * 32)


def test_get_unknown_run_is_not_found(repo: Path) -> None:
    client = gitml.Client()
    for run_id in ("0" * 32, "/models/{name}", "a//b"):  # the last two name no ref at all
        with pytest.raises(gitml.NotFound, match="no run"):
            client.get_run(run_id)


# -- logging --------------------------------------------------------------------------


def test_log_batch_keeps_explicit_steps_and_timestamps(repo: Path) -> None:
    client = gitml.Client()
    run = client.create_run()
    points = [
        gitml.Metric("loss", 0.9, 1_000, 0),
        gitml.Metric("loss", 0.5, 2_000, 10),
        gitml.Metric("acc", 0.75, 3_000, 10),
    ]
    client.log_batch(
        run.id,
        metrics=points,
        params=[gitml.Param("lr", "0.01")],
        tags={"team": "growth"},
    )
    # Synchronous: another client (another process, in effect) sees it at once.
    other = gitml.Client()
    got = other.get_run(run.id)
    assert got.params == {"lr": "0.01"}
    assert got.tags == {"team": "growth"}
    assert (got.metrics["loss"].value, got.metrics["loss"].step) == (0.5, 10)
    assert got.metrics["loss"].timestamp == 2_000
    assert other.get_metric_history(run.id, "loss") == points[:2]
    assert other.get_metric_history(run.id, "acc") == points[2:]
    stored = yaml.safe_load(show(repo, RUNS + run.id, "run.yaml"))
    assert stored["metrics"]["acc"] == {"value": 0.75, "step": 10, "timestamp": 3000}


def test_log_batch_is_validated_as_a_whole(repo: Path) -> None:
    client = gitml.Client()
    run = client.create_run(commit=True)
    tip = git(repo, "rev-parse", RUNS + run.id)
    with pytest.raises(gitml.InvalidInput):
        client.log_batch(
            run.id,
            metrics=[gitml.Metric("ok", 1.0, 1, 0), gitml.Metric("bad\tkey", 1.0, 1, 0)],
            params={"p": 1},
        )
    client.flush()
    assert git(repo, "rev-parse", RUNS + run.id) == tip
    assert client.get_run(run.id).params == {}


def test_metric_history_is_ordered_by_step_then_timestamp(repo: Path) -> None:
    client = gitml.Client()
    run = client.create_run()
    for step, ts, value in [(3, 30, 0.3), (1, 12, 0.12), (2, 20, 0.2), (1, 11, 0.11)]:
        client.log_metric(run.id, "loss", value, timestamp=ts, step=step)
    history = client.get_metric_history(run.id, "loss")
    assert [(m.step, m.timestamp, m.value) for m in history] == [
        (1, 11, 0.11),
        (1, 12, 0.12),
        (2, 20, 0.2),
        (3, 30, 0.3),
    ]
    # The latest value is the highest step, as in MLflow.
    assert client.get_run(run.id).metrics["loss"].value == 0.3
    with pytest.raises(gitml.NotFound):
        client.get_metric_history(run.id, "missing")


def test_special_float_values_round_trip(repo: Path) -> None:
    client = gitml.Client()
    run = client.create_run()
    for i, v in enumerate([float("inf"), float("-inf"), 1e-300, 0.1 + 0.2]):
        client.log_metric(run.id, "m", v, timestamp=i, step=i)
    values = [m.value for m in client.get_metric_history(run.id, "m")]
    assert values == [float("inf"), float("-inf"), 1e-300, 0.1 + 0.2]


# -- values that no record, commit or index can hold ---------------------------------------


def test_text_that_is_not_unicode_is_refused_and_every_run_stays_readable(repo: Path) -> None:
    """A lone surrogate is what os.listdir gives for a file name that is not UTF-8."""
    from testing.cli import cli

    client = gitml.Client()
    run = client.create_run()
    client.log_param(run.id, "a:b", "x")  # a quoted key sends run.yaml to PyYAML
    client.flush()
    before = all_refs(repo)
    name = "model-\udcff.pkl"
    with pytest.raises(gitml.InvalidInput, match="tag 'file' value holds '\\\\udcff'"):
        client.set_tag(run.id, "file", name)
    with pytest.raises(gitml.InvalidInput, match="param 'file' value holds"):
        client.log_param(run.id, "file", name)
    with pytest.raises(gitml.InvalidInput, match="param 'file' value holds"):
        client.log_batch(run.id, params={"file": name}, tags={"ok": "1"})
    with pytest.raises(gitml.InvalidInput, match="tag 'file' value holds"):
        client.create_run(tags={"file": name})
    with pytest.raises(gitml.InvalidInput, match="run name holds"):
        client.create_run(run_name=name)
    client.flush()
    assert all_refs(repo) == before
    assert [r.id for r in client.search_runs(["0"])] == [run.id]
    assert gitml.Client().get_run(run.id).params == {"a:b": "x"}
    listed = cli("runs", "list", "--json")
    assert run.id in listed.stdout


def test_steps_and_timestamps_beyond_64_bits_are_refused(repo: Path) -> None:
    client = gitml.Client()
    run = client.create_run()
    client.log_metric(run.id, "m", 1.0, timestamp=2**63 - 1, step=2**63 - 1)
    client.flush()
    before = all_refs(repo)
    for kwargs in [{"step": 2**63}, {"timestamp": 2**63}, {"step": -(2**63) - 1}]:
        with pytest.raises(gitml.InvalidInput, match=r"metric 'm' (step|timestamp)"):
            client.log_metric(run.id, "m", 2.0, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(gitml.InvalidInput, match="metric 'm' step is over the limit"):
        client.log_batch(run.id, metrics=[gitml.Metric("m", 2.0, 0, 2**64)])
    with pytest.raises(gitml.InvalidInput, match="'end' timestamp is over the limit"):
        client.set_terminated(run.id, end_time=2**63)
    with pytest.raises(gitml.InvalidInput, match="'m' value is beyond a 64-bit float's range"):
        client.log_metric(run.id, "m", 10**400)
    client.flush()
    assert all_refs(repo) == before
    [found] = client.search_runs(["0"], "metrics.m = 1")
    assert (found.metrics["m"].step, found.metrics["m"].timestamp) == (2**63 - 1, 2**63 - 1)


def test_experiment_names_that_break_a_record_or_a_commit_are_refused(repo: Path) -> None:
    client = gitml.Client()
    client.create_experiment("x" * 500)
    before = all_refs(repo)
    for bad, rule in [
        ("x" * 501, "is 501 characters; the limit is 500"),
        ("a\0b", "holds a NUL or a line break"),
        ("a\nGitml-Run: 0", "holds a NUL or a line break"),
        ("a\udc80", "is not valid Unicode text"),
    ]:
        with pytest.raises(gitml.InvalidInput, match=f"^experiment name.*{rule}") as e:
            client.create_experiment(bad)
        assert "\n" not in str(e.value)
    assert all_refs(repo) == before
    fsck(repo)


def metric_blobs(repo: Path, ref: str, key: str) -> dict[str, str]:
    out = git(repo, "ls-tree", "-r", ref, "metrics/")
    entries = {ln.split("\t")[1]: ln.split()[2] for ln in out.splitlines()}
    return {p: sha for p, sha in entries.items() if p.split("/")[-1].startswith(f"{key}.")}


def test_long_history_is_appended_not_rewritten(repo: Path) -> None:
    client = gitml.Client()
    run = client.create_run()
    ref = RUNS + run.id
    with pytest.raises(gitml.InvalidInput, match="at most 1000"):
        client.log_batch(run.id, metrics=[gitml.Metric("y", 1.0, i, i) for i in range(1001)])
    for start in range(0, 2500, 500):
        client.log_batch(
            run.id, metrics=[gitml.Metric("x", float(i), i, i) for i in range(start, start + 500)]
        )
    before = metric_blobs(repo, ref, "x")
    assert len(before) >= 2  # history is chunked
    for i in range(2500, 4000):
        client.log_metric(run.id, "x", float(i), timestamp=i, step=i)
    history = client.get_metric_history(run.id, "x")
    assert [m.step for m in history] == list(range(4000))
    after = metric_blobs(repo, ref, "x")
    # Every chunk but the last, partial one is byte-for-byte the same blob.
    last = max(before)
    assert {p: b for p, b in before.items() if p != last} == {
        p: b for p, b in after.items() if p in before and p != last
    }


def test_metric_keys_with_slashes(repo: Path) -> None:
    client = gitml.Client()
    run = client.create_run()
    client.log_metric(run.id, "train/loss", 0.5, timestamp=1, step=0)
    client.log_metric(run.id, "train/acc", 0.9, timestamp=1, step=0)
    assert [m.value for m in client.get_metric_history(run.id, "train/loss")] == [0.5]
    assert set(client.get_run(run.id).metrics) == {"train/loss", "train/acc"}
    assert gitml.Client().get_metric_history(run.id, "train/acc")[0].key == "train/acc"


def test_injected_clock_and_identity_reach_git(repo: Path) -> None:
    clock = FixedClock(1_700_000_000.0)
    client = gitml.Client(clock=clock, identity="Trainer Bot <bot@example.com>")
    run = client.create_run(commit=True)
    assert run.start_time == 1_700_000_000_000
    clock.advance(60)
    client.log_metric(run.id, "loss", 0.5)  # no timestamp: the clock's
    client.set_terminated(run.id)
    got = client.get_run(run.id)
    assert got.metrics["loss"].timestamp == 1_700_000_060_000
    assert got.end_time == 1_700_000_060_000
    log = git(repo, "log", "--format=%an <%ae> %ct %cn", f"HEAD..{RUNS}{run.id}").splitlines()
    assert log == [
        "Trainer Bot <bot@example.com> 1700000060 Trainer Bot",
        "Trainer Bot <bot@example.com> 1700000000 Trainer Bot",
    ]


def test_changed_param_is_a_conflict_and_nothing_is_lost(repo: Path) -> None:
    client = gitml.Client()
    run = client.create_run()
    client.log_param(run.id, "lr", 0.1)
    client.log_metric(run.id, "loss", 1.0, timestamp=1, step=0)
    with pytest.raises(gitml.Conflict, match="'lr'"):
        client.log_param(run.id, "lr", 0.2)
    client.log_param(run.id, "lr", 0.1)  # the same value again is fine
    client.log_metric(run.id, "loss", 0.5, timestamp=2, step=1)
    got = client.get_run(run.id)
    assert got.params == {"lr": "0.1"}
    assert [m.value for m in client.get_metric_history(run.id, "loss")] == [1.0, 0.5]


def test_param_changed_by_another_writer_is_a_conflict_at_flush(repo: Path) -> None:
    first = gitml.Client()
    run = first.create_run()
    second = gitml.Client()
    second.log_metric(run.id, "loss", 1.0, timestamp=1, step=0)  # second's buffer is open
    first.log_batch(run.id, params={"lr": "0.1"})  # committed first
    second.log_param(run.id, "lr", "0.2")  # second cannot know yet
    second.log_metric(run.id, "loss", 0.5, timestamp=2, step=1)
    with pytest.raises(gitml.Conflict, match="'lr'"):
        second.flush()
    # The other values of that flush were committed; the param kept its first value.
    third = gitml.Client()
    assert third.get_run(run.id).params == {"lr": "0.1"}
    assert [m.step for m in third.get_metric_history(run.id, "loss")] == [0, 1]
    assert list((repo / ".git/gitml/journal").rglob("*.log")) == []


def test_threads_logging_to_one_run_lose_nothing(repo: Path) -> None:
    write_config(repo, flush_points=50, flush_interval=3600)
    client = gitml.Client()
    run = client.create_run()

    def work(t: int) -> None:
        for i in range(400):
            client.log_metric(run.id, "loss", float(i), timestamp=i, step=t * 1000 + i)
        client.log_param(run.id, f"thread{t}", t)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    steps = [m.step for m in client.get_metric_history(run.id, "loss")]  # flushes
    assert sorted(steps) == sorted(t * 1000 + i for t in range(4) for i in range(400))
    assert client.get_run(run.id).params == {f"thread{t}": str(t) for t in range(4)}
    assert journal_files(repo) == [] or not any(p.is_file() for p in journal_files(repo))


def test_buffer_is_committed_in_the_background(repo: Path) -> None:
    write_config(repo, flush_interval=0.2)
    writer = gitml.Client()
    run = writer.create_run(commit=True)
    tip = git(repo, "rev-parse", RUNS + run.id)
    writer.log_metric(run.id, "loss", 0.5, timestamp=1, step=0)
    assert git(repo, "rev-parse", RUNS + run.id) == tip  # buffered, not committed per call
    procs.wait_for(
        lambda: git(repo, "rev-parse", RUNS + run.id) != tip, 10, "the background flusher"
    )
    # Another process (here: another client that never saw the buffer) reads it.
    record = yaml.safe_load(show(repo, RUNS + run.id, "run.yaml"))
    assert record["metrics"]["loss"]["value"] == 0.5
    writer.close()


def test_set_terminated_statuses(repo: Path) -> None:
    client = gitml.Client()
    for status in ("FINISHED", "FAILED", "KILLED"):
        run = client.create_run()
        client.log_metric(run.id, "loss", 1.0, step=0)  # buffered, committed with the end
        client.set_terminated(run.id, status, end_time=5_000)
        got = gitml.Client().get_run(run.id)
        assert (got.status, got.end_time) == (status, 5_000)
        assert "loss" in got.metrics
    run = client.create_run()
    with pytest.raises(gitml.InvalidInput, match="status"):
        client.set_terminated(run.id, "DONE")
    assert client.get_run(run.id).status == "RUNNING"
    client.set_terminated(run.id)
    got = client.get_run(run.id)
    assert got.status == "FINISHED"
    assert got.end_time is not None and got.end_time >= got.start_time


def test_delete_and_restore_run(repo: Path) -> None:
    client = gitml.Client()
    kept = client.create_run(run_name="kept", start_time=1)
    gone = client.create_run(run_name="gone", start_time=2)
    client.delete_run(gone.id)
    runs, broken = client.list_runs()
    assert ([r.id for r in runs], broken) == ([kept.id], [])
    everything, _ = client.list_runs(include_deleted=True)
    assert [r.id for r in everything] == [gone.id, kept.id]  # newest first
    assert client.get_run(gone.id).lifecycle_stage == "deleted"
    # The history stays in Git.
    assert git(repo, "rev-parse", "--verify", "-q", RUNS + gone.id)
    client.restore_run(gone.id)
    runs, _ = client.list_runs()
    assert [r.id for r in runs] == [gone.id, kept.id]


def test_list_runs_filters_by_experiment(repo: Path) -> None:
    client = gitml.Client()
    a = client.create_run("a")
    b = client.create_run("b")
    runs, _ = client.list_runs([a.experiment_id])
    assert [r.id for r in runs] == [a.id]
    runs, _ = client.list_runs([a.experiment_id, b.experiment_id])
    assert {r.id for r in runs} == {a.id, b.id}


def test_resolve_run_id_by_prefix(repo: Path) -> None:
    client = gitml.Client()
    run = client.create_run()
    assert client.resolve_run_id(run.id[:6]) == run.id
    assert client.resolve_run_id(run.id) == run.id
    with pytest.raises(gitml.NotFound):
        client.resolve_run_id("zz")


def test_malformed_run_record_is_reported_not_fatal(repo: Path) -> None:
    client = gitml.Client()
    good = client.create_run(run_name="good", commit=True)
    bad = client.create_run(run_name="bad", commit=True)
    ref = RUNS + bad.id
    record = yaml.safe_load(show(repo, ref, "run.yaml"))
    record["status"] = "EXPLODED"
    commit_file_on_ref(repo, ref, "run.yaml", yaml.safe_dump(record))

    runs, broken = gitml.Client().list_runs()
    assert [r.id for r in runs] == [good.id]
    assert len(broken) == 1
    error = broken[0]
    assert isinstance(error, gitml.InvalidRecord)
    assert (error.where, error.path, error.field) == (ref, "run.yaml", "status")
    assert ref in str(error) and "run.yaml" in str(error) and "status" in str(error)
    with pytest.raises(gitml.InvalidRecord, match="status"):
        gitml.Client().get_run(bad.id)


def test_run_record_with_wrong_id_or_bad_yaml_is_reported(repo: Path) -> None:
    client = gitml.Client()
    a = client.create_run(commit=True)
    b = client.create_run(commit=True)
    record = yaml.safe_load(show(repo, RUNS + a.id, "run.yaml"))
    record["id"] = "1" * 32
    commit_file_on_ref(repo, RUNS + a.id, "run.yaml", yaml.safe_dump(record))
    commit_file_on_ref(repo, RUNS + b.id, "run.yaml", "status: [unclosed\n")
    runs, broken = gitml.Client().list_runs()
    assert runs == []
    found = {(e.where, e.field) for e in broken}
    assert found == {(RUNS + a.id, "id"), (RUNS + b.id, "(document)")}


# -- where runs go ----------------------------------------------------------------------


def _check_bare_tracking(bare: Path, work: Path, run: gitml.Run) -> None:
    ref = RUNS + run.id
    code = head(work)
    assert git(work, "for-each-ref", "refs/gitml/") == ""
    assert git(bare, "for-each-ref", "--format=%(refname)", RUNS) == ref
    assert git(bare, "cat-file", "-t", code) == "commit"
    assert is_ancestor(bare, code, ref)
    assert code in git(bare, "log", "--format=%H", ref).splitlines()
    fsck(bare)


def test_tracking_uri_argument_points_at_a_bare_repo(repo: Path, tmp_path: Path) -> None:
    bare = init_repo(tmp_path / "records.git", bare=True)
    client = gitml.Client(tracking_uri=str(bare))
    run = client.create_run(run_name="remote")
    client.log_metric(run.id, "loss", 0.5, step=0)
    client.set_terminated(run.id)
    _check_bare_tracking(bare, repo, run)
    assert run.source.commit == head(repo)
    got = gitml.Client(tracking_uri=str(bare)).get_run(run.id)
    assert got.status == "FINISHED" and got.metrics["loss"].value == 0.5
    assert not (repo / ".git" / "gitml" / "journal").exists() or not any(
        (repo / ".git" / "gitml" / "journal").rglob("*.log")
    )


def test_tracking_uri_from_environment(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = init_repo(tmp_path / "records.git", bare=True)
    monkeypatch.setenv("GITML_TRACKING_URI", str(bare))
    (repo / "train.py").write_text("print('dirty')\n")
    run = gitml.Client().create_run(commit=True)
    _check_bare_tracking(bare, repo, run)
    snap = run.source.snapshot
    assert snap is not None
    assert git(bare, "rev-parse", f"{RUNS}{run.id}^") == snap
    assert show(bare, snap, "train.py") == "print('dirty')\n"
    # A second run copies nothing new but still reaches the code.
    run2 = gitml.Client().create_run(commit=True)
    assert is_ancestor(bare, head(repo), RUNS + run2.id)
    fsck(bare)


def test_tracking_uri_that_does_not_exist(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(gitml.NotARepository, match="git init --bare"):
        gitml.Client(tracking_uri=str(tmp_path / "missing.git"))


def test_outside_a_repository_without_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "nowhere"
    empty.mkdir()
    monkeypatch.chdir(empty)
    with pytest.raises(gitml.NotARepository, match="git init"):
        gitml.Client()


def test_outside_a_repository_with_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bare = init_repo(tmp_path / "records.git", bare=True)
    empty = tmp_path / "nowhere"
    empty.mkdir()
    monkeypatch.chdir(empty)
    run = gitml.Client(tracking_uri=str(bare)).create_run(commit=True)
    assert run.source.commit is None and run.source.dirty is False
    assert git(bare, "rev-list", "--count", RUNS + run.id) == "1"
    with pytest.raises(gitml.NotFound, match="no code commit"):
        gitml.Client(tracking_uri=str(bare)).restore_code(run.id, tmp_path / "code")


# -- artifacts --------------------------------------------------------------------------


def test_artifact_logging_listing_and_reading(repo: Path, tmp_path: Path) -> None:
    client = gitml.Client()
    run = client.create_run()
    model = tmp_path / "model.bin"
    model.write_bytes(b"\x00\x01weights")
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.csv").write_text("x,y\n1,2\n")
    (data / "sub" / "b.txt").write_text("bee")

    client.log_artifact(run.id, model)
    client.log_artifact(run.id, model, artifact_path="models/v1")
    client.log_artifacts(run.id, data, artifact_path="data")
    client.log_text(run.id, "hello\n", "notes/readme.txt")
    client.log_dict(run.id, {"classes": [0, 1]}, "labels.json")
    client.log_dict(run.id, {"classes": [0, 1]}, "labels.yaml")

    listed = client.list_artifacts(run.id)
    assert [a.path for a in listed] == [
        "data/a.csv",
        "data/sub/b.txt",
        "labels.json",
        "labels.yaml",
        "model.bin",
        "models/v1/model.bin",
        "notes/readme.txt",
    ]
    by_path = {a.path: a for a in listed}
    weights = b"\x00\x01weights"
    assert by_path["model.bin"].sha256 == hashlib.sha256(weights).hexdigest()
    assert by_path["model.bin"].size == len(weights)
    assert all(a.storage == "git" for a in listed)
    assert [a.path for a in client.list_artifacts(run.id, "data")] == [
        "data/a.csv",
        "data/sub/b.txt",
    ]

    assert client.read_artifact(run.id, "models/v1/model.bin") == weights
    assert json.loads(client.read_artifact(run.id, "labels.json")) == {"classes": [0, 1]}
    assert yaml.safe_load(client.read_artifact(run.id, "labels.yaml")) == {"classes": [0, 1]}
    assert client.read_artifact(run.id, "notes/readme.txt") == b"hello\n"

    # The same bytes are in the run's Git tree and listed in its manifest.
    ref = RUNS + run.id
    assert _git(repo, "show", f"{ref}:artifacts/data/sub/b.txt") == "bee"
    manifest = yaml.safe_load(show(repo, ref, "artifacts.yaml"))
    assert [a["path"] for a in manifest["artifacts"]] == [a.path for a in listed]

    single = client.download_artifacts(run.id, "data/a.csv", tmp_path / "dl1")
    assert single == tmp_path / "dl1" / "a.csv"
    assert single.read_text() == "x,y\n1,2\n"
    folder = client.download_artifacts(run.id, "data", tmp_path / "dl2")
    assert folder == tmp_path / "dl2" / "data"
    assert (folder / "a.csv").read_text() == "x,y\n1,2\n"
    assert (folder / "sub" / "b.txt").read_text() == "bee"
    with pytest.raises(gitml.NotFound):
        client.read_artifact(run.id, "missing.txt")
    with pytest.raises(gitml.NotFound):
        client.download_artifacts(run.id, "missing", tmp_path / "dl3")


MLFLOW_DOWNLOAD_ALL = """
import json, sys
from pathlib import Path
from mlflow import MlflowClient

src, out, empty = (Path(a) for a in sys.argv[1:])
client = MlflowClient()
run_id = client.create_run(client.create_experiment("download")).info.run_id
client.log_artifacts(run_id, str(src))
client.log_artifact(run_id, str(src / "a.txt"), "copies")
returned = client.download_artifacts(run_id, "", str(out))
bare = client.create_run(client.get_experiment_by_name("download").experiment_id).info.run_id
returned_empty = client.download_artifacts(bare, "", str(empty))
print(json.dumps({"returned": returned, "returned_empty": returned_empty}))
"""


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_download_of_everything_is_laid_out_as_mlflow_lays_it_out(
    repo: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "b.txt").write_text("b")
    theirs = mlflow_answer(
        MLFLOW_DOWNLOAD_ALL, tmp_path, str(src), str(tmp_path / "ml"), str(tmp_path / "ml-empty")
    )

    client = gitml.Client()
    run = client.create_run()
    client.log_artifacts(run.id, src)
    client.log_artifact(run.id, src / "a.txt", "copies")
    ours = client.download_artifacts(run.id, "", tmp_path / "ours")
    empty = client.download_artifacts(client.create_run().id, "", tmp_path / "ours-empty")

    assert Path(theirs["returned"]) == tmp_path / "ml" and ours == tmp_path / "ours"
    expected = {"a.txt": "a", "copies/a.txt": "a", "sub/b.txt": "b"}
    assert _tree(ours) == _tree(tmp_path / "ml") == expected
    assert Path(theirs["returned_empty"]) == tmp_path / "ml-empty"
    assert empty == tmp_path / "ours-empty" and list(empty.iterdir()) == []


def test_artifact_overwrite_and_file_folder_clash(repo: Path) -> None:
    client = gitml.Client()
    run = client.create_run()
    client.log_text(run.id, "one", "out/a.txt")
    client.log_text(run.id, "two", "out/a.txt")
    assert client.read_artifact(run.id, "out/a.txt") == b"two"
    assert len(client.list_artifacts(run.id)) == 1
    with pytest.raises(gitml.InvalidInput, match="clashes"):
        client.log_text(run.id, "x", "out")
    with pytest.raises(gitml.InvalidInput, match="clashes"):
        client.log_text(run.id, "x", "out/a.txt/inner")
    assert [a.path for a in client.list_artifacts(run.id)] == ["out/a.txt"]


def test_identical_artifacts_are_stored_once(repo: Path, tmp_path: Path) -> None:
    client = gitml.Client()
    a = client.create_run()
    b = client.create_run()
    payload = tmp_path / "x"
    payload.write_bytes(b"same bytes " * 100)
    client.log_artifact(a.id, payload)
    client.log_artifact(b.id, payload)
    blob_a = git(repo, "rev-parse", f"{RUNS}{a.id}:artifacts/x")
    blob_b = git(repo, "rev-parse", f"{RUNS}{b.id}:artifacts/x")
    assert blob_a == blob_b
    assert git(repo, "cat-file", "-s", blob_a) == str(len(b"same bytes " * 100))


def test_large_artifact_goes_to_external_store(repo: Path, tmp_path: Path) -> None:
    write_config(repo, artifact_threshold=1000)
    client = gitml.Client()
    run = client.create_run()
    big = tmp_path / "big.bin"
    content = bytes(range(256)) * 20  # 5120 bytes
    big.write_bytes(content)
    client.log_artifact(run.id, big)
    client.log_bytes(run.id, b"y" * 2000, "big2.bin")
    client.log_text(run.id, "small", "small.txt")

    by_path = {a.path: a for a in client.list_artifacts(run.id)}
    sha = hashlib.sha256(content).hexdigest()
    assert by_path["big.bin"].storage == "external"
    assert (by_path["big.bin"].sha256, by_path["big.bin"].size) == (sha, len(content))
    assert by_path["big2.bin"].storage == "external"
    assert by_path["small.txt"].storage == "git"
    manifest = yaml.safe_load(show(repo, RUNS + run.id, "artifacts.yaml"))
    assert {a["path"]: a.get("storage") for a in manifest["artifacts"]}["big.bin"] == "external"
    # Not in Git: the run's tree has no such file.
    tree = git(repo, "ls-tree", "-r", "--name-only", RUNS + run.id)
    assert "artifacts/big.bin" not in tree.splitlines()
    assert "artifacts/small.txt" in tree.splitlines()

    stored = repo / ".git" / "gitml" / "artifacts" / sha[:2] / sha[2:]
    assert stored.read_bytes() == content
    assert client.read_artifact(run.id, "big.bin") == content
    out = client.download_artifacts(run.id, "big.bin", tmp_path / "dl")
    assert out.read_bytes() == content

    stored.chmod(0o644)
    stored.write_bytes(b"tampered" + content[8:])
    with pytest.raises(gitml.Corrupt, match=r"big\.bin"):
        client.read_artifact(run.id, "big.bin")
    with pytest.raises(gitml.Corrupt):
        client.download_artifacts(run.id, "big.bin", tmp_path / "dl-bad")
    assert not (tmp_path / "dl-bad" / "big.bin").exists()
    stored.unlink()
    with pytest.raises(gitml.NotFound, match="missing"):
        client.read_artifact(run.id, "big.bin")


def test_external_store_folder_from_config(repo: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared-store"
    write_config(repo, artifact_threshold=10, artifact_store=str(shared))
    client = gitml.Client()
    run = client.create_run()
    client.log_text(run.id, "more than ten bytes", "a.txt")
    sha = hashlib.sha256(b"more than ten bytes").hexdigest()
    assert (shared / sha[:2] / sha[2:]).read_bytes() == b"more than ten bytes"
    assert not (repo / ".git" / "gitml" / "artifacts").exists()


@pytest.mark.parametrize(
    "bad",
    ["../x", "/etc/passwd", "a/../../x", "..", "a\\b", ".git/config", "a/" * 2000 + "f", "\udcff"],
)
def test_artifact_path_traversal_is_rejected(repo: Path, tmp_path: Path, bad: str) -> None:
    client = gitml.Client()
    run = client.create_run()
    source = tmp_path / "f.txt"
    source.write_text("payload")
    before = all_refs(repo)
    with pytest.raises(gitml.InvalidInput):
        client.log_text(run.id, "payload", bad)
    with pytest.raises(gitml.InvalidInput):
        client.log_dict(run.id, {"a": 1}, bad)
    with pytest.raises(gitml.InvalidInput):
        client.log_artifact(run.id, source, artifact_path=bad)
    with pytest.raises(gitml.InvalidInput):
        client.read_artifact(run.id, bad)
    with pytest.raises(gitml.InvalidInput):
        client.download_artifacts(run.id, bad, tmp_path / "out")
    assert all_refs(repo) == before
    assert client.list_artifacts(run.id) == []
    assert not (tmp_path / "x").exists()


def test_log_artifacts_refuses_a_symlink_that_leads_out_of_the_folder(
    repo: Path, tmp_path: Path
) -> None:
    client = gitml.Client()
    run = client.create_run()
    folder = tmp_path / "outputs"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_text("a")
    (folder / "same.txt").symlink_to(folder / "sub" / "a.txt")
    secret = tmp_path / "id_rsa"
    secret.write_text("private key")
    (folder / "key").symlink_to(secret)
    (folder / "linked-dir").symlink_to(tmp_path)  # folders behind symlinks are not walked
    before = all_refs(repo)
    with pytest.raises(gitml.InvalidInput, match=f"a symlink: 'key' leads outside {folder}"):
        client.log_artifacts(run.id, folder)
    assert all_refs(repo) == before
    (folder / "key").unlink()
    client.log_artifacts(run.id, folder, artifact_path="out")
    assert [a.path for a in client.list_artifacts(run.id)] == ["out/same.txt", "out/sub/a.txt"]
    assert client.read_artifact(run.id, "out/same.txt") == b"a"


def test_log_artifact_of_missing_file(repo: Path, tmp_path: Path) -> None:
    client = gitml.Client()
    run = client.create_run()
    with pytest.raises(gitml.InvalidInput):
        client.log_artifact(run.id, tmp_path / "missing")
    with pytest.raises(gitml.InvalidInput):
        client.log_artifacts(run.id, tmp_path / "missing")


# -- code ---------------------------------------------------------------------------------


def test_restore_code_of_clean_and_dirty_runs(repo: Path, tmp_path: Path) -> None:
    (repo / "pkg").mkdir()
    (repo / "pkg" / "model.py").write_text("W = 1\n")
    run_sh = repo / "run.sh"
    run_sh.write_text("#!/bin/sh\necho hi\n")
    run_sh.chmod(0o755)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "more code")
    client = gitml.Client()
    clean = client.create_run()
    (repo / "pkg" / "model.py").write_text("W = 2\n")
    dirty = client.create_run()

    count = client.restore_code(clean.id, tmp_path / "clean")
    assert count == 3
    assert (tmp_path / "clean" / "pkg" / "model.py").read_text() == "W = 1\n"
    assert (tmp_path / "clean" / "train.py").read_text() == (repo / "train.py").read_text()
    assert (tmp_path / "clean" / "run.sh").stat().st_mode & 0o111

    client.restore_code(dirty.id, tmp_path / "dirty")
    assert (tmp_path / "dirty" / "pkg" / "model.py").read_text() == "W = 2\n"

    with pytest.raises(gitml.InvalidInput, match="not empty"):
        client.restore_code(clean.id, tmp_path / "dirty")


UNTRACKED_SCRIPT = """
import gitml

with gitml.start_run() as run:
    gitml.log_param("alpha", 0.5)
print(run.run_id)
"""


def run_script(repo: Path, script: str) -> subprocess.CompletedProcess[str]:
    """``python SCRIPT`` in ``repo``, as a user starts a training script; it must succeed."""
    done = subprocess.run(
        [sys.executable, script],
        cwd=repo,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


@pytest.mark.slow
def test_an_untracked_script_run_as_a_process_is_restored_by_runs_code(
    repo: Path, tmp_path: Path
) -> None:
    (repo / "new_train.py").write_text(UNTRACKED_SCRIPT)  # never git-added
    (repo / ".gitignore").write_text("*.ckpt\nignored/\n")
    (repo / "ignored").mkdir()
    (repo / "ignored" / "secret.txt").write_text("kept out\n")
    (repo / "model.ckpt").write_bytes(b"\0" * 2_000_000)
    status = git(repo, "status", "--porcelain")

    done = run_script(repo, "new_train.py")
    run_id = done.stdout.strip()
    run = gitml.Client().get_run(run_id)
    assert run.source.dirty and run.source.snapshot is not None
    assert run.source.omitted == []  # ignored files are not untracked code
    assert git(repo, "status", "--porcelain") == status  # the user's index is untouched

    restored = gitml_exe(repo, "runs", "code", run_id, "--into", str(tmp_path / "code"))
    assert restored.returncode == 0, restored.stderr
    assert restored.stderr == ""
    code = tmp_path / "code"
    assert (code / "new_train.py").read_text() == UNTRACKED_SCRIPT
    assert (code / ".gitignore").exists()
    assert sorted(p.name for p in code.iterdir()) == [".gitignore", "new_train.py", "train.py"]


@pytest.mark.slow
def test_an_ignored_entry_point_is_taken_and_large_untracked_files_are_named(
    repo: Path, tmp_path: Path
) -> None:
    (repo / ".gitignore").write_text("scratch/\n")
    (repo / "scratch").mkdir()
    (repo / "scratch" / "try.py").write_text(UNTRACKED_SCRIPT)
    (repo / "data.csv").write_bytes(b"1,2\n" * 300_000)  # 1.2 MB: over the per-file bound

    done = run_script(repo, "scratch/try.py")
    run = gitml.Client().get_run(done.stdout.strip())
    assert run.source.omitted == ["data.csv"]
    snapshot = run.source.snapshot
    assert snapshot is not None
    listed = git(repo, "ls-tree", "-r", "--name-only", snapshot).splitlines()
    assert listed == [".gitignore", "scratch/try.py", "train.py"]
    assert "data.csv" in git(repo, "log", "-1", "--format=%B", snapshot)

    restored = gitml_exe(repo, "runs", "code", run.id, "--into", str(tmp_path / "code"))
    assert restored.returncode == 0, restored.stderr
    assert restored.stderr == (
        "warning: not reproducible: untracked files too large for the snapshot "
        "were left out (data.csv)\n"
    )
    shown = gitml_exe(repo, "runs", "show", run.id)
    assert shown.returncode == 0, shown.stderr
    assert "not reproducible" in shown.stdout and "data.csv" in shown.stdout


def test_untracked_files_beyond_the_total_bound_are_left_out_by_name(repo: Path) -> None:
    for i in range(12):  # 12 x 0.9 MB: ten fit within the 10 MB total
        (repo / f"part{i:02}.bin").write_bytes(bytes([i]) * 900_000)
    run = gitml.Client().create_run()
    assert run.source.omitted == ["part11.bin"]
    assert run.source.snapshot is not None
    listed = git(repo, "ls-tree", "-r", "--name-only", run.source.snapshot).splitlines()
    assert listed == [f"part{i:02}.bin" for i in range(11)] + ["train.py"]


def test_restore_code_from_bare_tracking_repo(repo: Path, tmp_path: Path) -> None:
    bare = init_repo(tmp_path / "records.git", bare=True)
    (repo / "train.py").write_text("print('v2')\n")
    run = gitml.Client(tracking_uri=str(bare)).create_run()
    # Restore from somewhere else entirely: only the bare repository is needed.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    client = gitml.Client(tracking_uri=str(bare))
    client.restore_code(run.id, elsewhere / "code")
    assert (elsewhere / "code" / "train.py").read_text() == "print('v2')\n"


# -- durability: killed processes lose nothing ---------------------------------------------

LOGGER = """
import sys, time
import gitml

n = int(sys.argv[1])
client = gitml.Client()
run = client.create_run(run_name="doomed")
print(run.id)
client.log_batch(run.id, params={"lr": 0.1, "depth": 6}, synchronous=False)
client.log_param(run.id, "optimizer", "adam")
client.set_tag(run.id, "phase", "train")
for i in range(n):
    client.log_metric(run.id, "loss", 1 / (i + 1), timestamp=1_000 + i, step=i)
    if i % 2:
        client.log_metric(run.id, "acc", i / n, timestamp=1_000 + i, step=i)
print("READY")
time.sleep(600)
"""


def journal_files(repo: Path) -> list[Path]:
    root = repo / ".git" / "gitml" / "journal"
    return sorted(root.rglob("*")) if root.exists() else []


def gitml_cli(repo: Path, *args: str) -> str:
    done = gitml_exe(repo, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def kill_logger(repo: Path, n: int) -> str:
    """Start a child that logs ``n`` points without committing them, and SIGKILL it."""
    write_config(repo, flush_interval=3600, flush_points=1_000_000)
    child = procs.spawn(LOGGER, repo, str(n))
    lines = procs.read_until(child)
    run_id = lines[0]
    # While the writer lives, its journal is its own: a new Client leaves it alone.
    assert gitml.Client().recovered == []
    assert [p.suffix for p in journal_files(repo) if p.is_file()] == [".log"]
    child.send_signal(signal.SIGKILL)
    assert procs.finish(child)[0] == -signal.SIGKILL
    # Nothing was committed, not even the run's start: only the journal knows it.
    assert git(repo, "for-each-ref", RUNS) == ""
    return run_id


def check_recovered(run_id: str, n: int) -> None:
    client = gitml.Client()
    run = client.get_run(run_id)
    assert run.params == {"lr": "0.1", "depth": "6", "optimizer": "adam"}
    assert run.tags == {"phase": "train"}
    assert run.status == "RUNNING"  # nobody ended it; recovery does not pretend to
    loss = client.get_metric_history(run_id, "loss")
    assert [(m.step, m.timestamp, m.value) for m in loss] == [
        (i, 1_000 + i, 1 / (i + 1)) for i in range(n)
    ]
    acc = client.get_metric_history(run_id, "acc")
    assert [m.step for m in acc] == list(range(1, n, 2))
    assert run.metrics["loss"].step == n - 1


@pytest.mark.slow
def test_sigkilled_process_is_recovered_by_the_cli(repo: Path) -> None:
    n = 3000
    run_id = kill_logger(repo, n)
    report = gitml_cli(repo, "runs", "recover")
    assert f"run {run_id}: recovered {n + n // 2} metric points, 3 params, 1 tags" in report
    assert journal_files(repo) == []
    tip = git(repo, "rev-parse", RUNS + run_id)
    check_recovered(run_id, n)
    # A second recovery finds nothing and adds nothing.
    assert gitml_cli(repo, "runs", "recover").strip() == "Nothing to recover."
    assert git(repo, "rev-parse", RUNS + run_id) == tip
    assert len(gitml.Client().get_metric_history(run_id, "loss")) == n
    fsck(repo)


@pytest.mark.slow
def test_sigkilled_process_is_recovered_by_the_next_client(repo: Path) -> None:
    n = 500
    run_id = kill_logger(repo, n)
    segment = next(p for p in journal_files(repo) if p.is_file())
    saved = segment.read_bytes()
    client = gitml.Client()
    assert len(client.recovered) == 1 and run_id in client.recovered[0]
    assert journal_files(repo) == []
    check_recovered(run_id, n)
    tip = git(repo, "rev-parse", RUNS + run_id)
    # A process killed after its commit but before unlinking its segment leaves
    # a journal that is already committed: recovery must only delete it.
    segment.parent.mkdir(parents=True, exist_ok=True)
    segment.write_bytes(saved)
    assert gitml.Client().recovered == []
    assert journal_files(repo) == []
    assert git(repo, "rev-parse", RUNS + run_id) == tip
    check_recovered(run_id, n)


FLUENT_LOGGER = """
import time
import gitml

run = gitml.start_run(run_name="journaled")
gitml.log_params({"lr": 0.1})
for i in range(200):
    gitml.log_metric("loss", 1 / (i + 1), step=i, timestamp=1_000 + i)
print(run.run_id)
print("READY")
time.sleep(600)
"""


@pytest.mark.slow
def test_fluent_run_killed_before_its_first_commit_is_recovered(repo: Path) -> None:
    write_config(repo, flush_interval=3600, flush_points=1_000_000)
    code = head(repo)
    (repo / "train.py").write_text("print('dirty when killed')\n")
    child = procs.spawn(FLUENT_LOGGER, repo)
    run_id = procs.read_until(child)[0]
    child.send_signal(signal.SIGKILL)
    procs.finish(child)
    assert git(repo, "for-each-ref", RUNS) == ""  # only the journal knows the run

    report = gitml_cli(repo, "runs", "recover")
    assert f"run {run_id}: recovered 200 metric points, 1 params" in report
    assert journal_files(repo) == []
    client = gitml.Client()
    run = client.get_run(run_id)
    assert (run.name, run.status, run.params) == ("journaled", "RUNNING", {"lr": "0.1"})
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == list(range(200))
    # Lineage survives the crash: run -> snapshot of the dirty tree -> HEAD.
    assert run.source.dirty and run.source.snapshot is not None
    shas = [sha for sha, _ in first_parent_log(repo, RUNS + run_id)]
    assert shas[shas.index(run.source.snapshot) + 1] == code
    assert show(repo, run.source.snapshot, "train.py") == "print('dirty when killed')\n"
    fsck(repo)


def run_in_child(repo: Path, body: str) -> tuple[subprocess.Popen[str], str]:
    """Start a child running ``body`` inside ``with gitml.start_run()``; wait for READY."""
    script = f"""
import time
import gitml

with gitml.start_run() as run:
    gitml.log_param("p", 1)
    gitml.log_metric("loss", 0.5, step=0)
    print(run.run_id)
    print("READY")
    {body}
"""
    child = procs.spawn(script, repo)
    return child, procs.read_until(child)[0]


@pytest.mark.slow
def test_sigterm_inside_start_run_ends_it_killed(repo: Path) -> None:
    child, run_id = run_in_child(repo, "time.sleep(600)")
    child.send_signal(signal.SIGTERM)
    code, _, err = procs.finish(child)
    assert code == 128 + signal.SIGTERM, err
    run = gitml.Client().get_run(run_id)
    assert run.status == "KILLED"
    assert run.end_time is not None
    assert run.params == {"p": "1"} and run.metrics["loss"].value == 0.5
    assert journal_files(repo) == []


STEADY_LOGGER = """
import gitml

with gitml.start_run() as run:
    print(run.run_id)
    i = 0
    while True:
        gitml.log_metric("loss", float(i), step=i, timestamp=i)
        i += 1
        if i == 1000:
            print("READY")
"""


@pytest.mark.slow
def test_sigterm_while_logging_and_committing(repo: Path) -> None:
    # Small batches, so the signal is likely to land in the middle of a commit.
    write_config(repo, flush_points=20)
    child = procs.spawn(STEADY_LOGGER, repo)
    run_id = procs.read_until(child)[0]
    # Signalled once a commit lands after READY: the child is logging and committing.
    ready = git(repo, "rev-parse", RUNS + run_id)
    procs.wait_for(lambda: git(repo, "rev-parse", RUNS + run_id) != ready, 30, "a commit")
    child.send_signal(signal.SIGTERM)
    code, _, err = procs.finish(child)
    assert code == 128 + signal.SIGTERM, err
    # At most an empty segment, when the signal landed as one was being opened.
    assert [p.stat().st_size for p in journal_files(repo) if p.is_file()] in ([], [0])
    tip = git(repo, "rev-parse", RUNS + run_id)
    client = gitml.Client()
    assert client.recovered == []
    assert journal_files(repo) == []
    assert git(repo, "rev-parse", RUNS + run_id) == tip
    run = client.get_run(run_id)
    assert run.status == "KILLED"
    steps = [m.step for m in client.get_metric_history(run_id, "loss")]
    assert len(steps) >= 1000
    assert steps == list(range(len(steps)))  # no gap, no duplicate
    assert run.metrics["loss"].step == len(steps) - 1
    assert list((repo / ".git" / "refs").rglob("*.lock")) == []
    fsck(repo)


@pytest.mark.slow
def test_ctrl_c_inside_start_run_ends_it_killed(repo: Path) -> None:
    child, run_id = run_in_child(repo, "time.sleep(600)")
    child.send_signal(signal.SIGINT)
    code, _, err = procs.finish(child)
    assert code != 0
    assert "KeyboardInterrupt" in err
    assert gitml.Client().get_run(run_id).status == "KILLED"


@pytest.mark.slow
def test_exception_inside_start_run_ends_it_failed(repo: Path) -> None:
    child, run_id = run_in_child(repo, "raise RuntimeError('diverged')")
    code, _, err = procs.finish(child)
    assert code == 1 and "diverged" in err
    run = gitml.Client().get_run(run_id)
    assert run.status == "FAILED"
    assert run.metrics["loss"].value == 0.5


@pytest.mark.slow
def test_run_left_open_at_exit_is_finished(repo: Path) -> None:
    script = """
import gitml
run = gitml.start_run()
for i in range(10):
    gitml.log_metric("loss", 1 / (i + 1), step=i)
print(run.run_id)
"""
    done = procs.run(script, repo)
    assert done.returncode == 0, done.stderr
    client = gitml.Client()
    run = client.get_run(done.stdout.strip())
    assert run.status == "FINISHED"
    assert len(client.get_metric_history(run.id, "loss")) == 10
    assert client.recovered == []


# -- concurrency: many processes, one run ---------------------------------------------------

WRITER = """
import sys, time
from pathlib import Path
import gitml

run_id, proc, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
client = gitml.Client()
own = run_id == "-"
if own:
    run_id = client.create_run(run_name=f"solo-{proc}").id
print(run_id)
print("READY")
while not go.exists():
    time.sleep(0.002)
client.log_param(run_id, f"p{proc}", proc)
client.log_param(run_id, "world_size", 8)
if proc % 2:
    # MLflow style: synchronous batches, each one commit.
    for start in range(0, 500, 25):
        client.log_batch(run_id, metrics=[
            gitml.Metric("loss", proc + i / 1000, 1_000 + i, proc * 1000 + i)
            for i in range(start, start + 25)
        ])
else:
    for i in range(500):
        step = proc * 1000 + i
        client.log_metric(run_id, "loss", proc + i / 1000, timestamp=1_000 + i, step=step)
if own:
    client.set_terminated(run_id)
"""

PROCS = 8
POINTS = 500


def expected_points(proc: int) -> list[tuple[int, float]]:
    return [(proc * 1000 + i, proc + i / 1000) for i in range(POINTS)]


@pytest.mark.slow
def test_concurrent_writers_lose_nothing(repo: Path, tmp_path: Path) -> None:
    write_config(repo, flush_points=50, flush_interval=3600)
    # Created here and journaled only: the children's first reads commit its start.
    creator = gitml.Client()
    shared = creator.create_run(run_name="distributed").id
    go = tmp_path / "go"
    children = [procs.spawn(WRITER, repo, shared, str(p), str(go)) for p in range(PROCS)]
    children += [procs.spawn(WRITER, repo, "-", str(p), str(go)) for p in range(PROCS)]
    own_runs = [procs.read_until(c, timeout=120)[0] for c in children][PROCS:]
    go.touch()
    for child in children:
        code, _, err = procs.finish(child, timeout=120)
        assert code == 0, err
    creator.close()  # its journal holds the start, which the children committed

    # Every child committed its own journal: there is nothing left to recover.
    assert [p for p in journal_files(repo) if p.is_file()] == []
    client = gitml.Client()
    assert client.recovered == []

    history = client.get_metric_history(shared, "loss")
    got = sorted((m.step, m.value) for m in history)
    assert got == sorted(pt for p in range(PROCS) for pt in expected_points(p))
    run = client.get_run(shared)
    assert run.params == {"world_size": "8", **{f"p{p}": str(p) for p in range(PROCS)}}
    assert run.metrics["loss"].step == (PROCS - 1) * 1000 + POINTS - 1
    assert run.status == "RUNNING"

    for proc, run_id in enumerate(own_runs):
        own = client.get_run(run_id)
        assert own.status == "FINISHED"
        assert own.params == {f"p{proc}": str(proc), "world_size": "8"}
        points = [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")]
        assert points == expected_points(proc)
        assert is_ancestor(repo, head(repo), RUNS + run_id)

    # One commit per flush, never one per point.
    commits = int(git(repo, "rev-list", "--count", f"HEAD..{RUNS}{shared}"))
    assert commits <= 1 + PROCS * (2 + POINTS // 25)
    fsck(repo)
