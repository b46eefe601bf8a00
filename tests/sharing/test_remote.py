"""Sharing through a Git remote: gitml push/pull, plain git with gitml's refspecs.

Two machines are two clones of one bare remote, each with its own identity;
every network step runs the real ``git``.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
from pathlib import Path

import pytest

import gitml
import gitml.registry.declarations
from gitml.format import yamlio
from gitml.format.record_cache import ValidatedRecords
from gitml.query.index import QueryIndex
from gitml.registry.declarations import declared
from gitml.registry.stages import Stages
from gitml.registry.versions import Registry
from gitml.sharing import remote as sharing
from testing.artifacts import add_manifest_entry
from testing.cli import cli
from testing.git import commit_file_on_ref, fsck, traced_command_lines, traced_commands
from testing.machines import Machine, log_run, on, pull, push, refs_of, store
from testing.procs import child_env, finish, limit_memory, spawn, write_config
from testing.records import billion_laughs
from testing.registry import log_iris_run

RUNS = "refs/gitml/runs/"


def test_push_then_pull_moves_runs_models_and_stages(
    a: Machine, b: Machine, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with on(b, monkeypatch) as client_b:
        assert list(client_b.search_runs()) == []  # B's index exists before the pull
    with on(a, monkeypatch) as client:
        run_id, _, _ = log_iris_run(client)
        other = log_run(client, "plain")
        registry = Registry(client)
        digest = registry.register(f"runs:/{run_id}/model", "churn").digest
        Stages(registry, client.config).assign("churn", 1, "production")
    report = push(a)
    assert not report.problems and RUNS + run_id in report.pushed
    assert "refs/heads/gitml/production" in report.pushed
    assert refs_of(remote, "refs/gitml/") == a.refs()
    assert push(a).pushed == {}  # nothing left to push

    monkeypatch.chdir(b.path)
    result = cli("pull")
    assert "updated" in result.output
    assert b.refs() == a.refs()
    assert b.refs("refs/heads/gitml/") == a.refs("refs/heads/gitml/")
    # The pull put the declarations it applied in the cache of validated records:
    # `gitml stage show` reads them without validating (without pydantic).
    with monkeypatch.context() as patch:
        patch.setattr(gitml.registry.declarations, "parse_declaration", None)
        s = store(b)
        tip = s.tip("refs/heads/gitml/production")
        assert tip is not None
        found = declared(s, "production", tip, ValidatedRecords(s.data_dir))
        assert found["churn"]["versions"] == [{"version": 1, "weight": 100, "digest": digest}]
        s.close()
    with on(b, monkeypatch) as client_b:
        assert client_b.get_run(run_id).name == "iris"
        assert {r.id for r in client_b.search_runs()} == {run_id, other}
        assert {r.id for r in client_b.search_runs(filter_string="metrics.acc > 0.4")} == {other}
        registry_b = Registry(client_b)
        version = registry_b.get_version("churn", 1)
        assert version.run_id == run_id
        registry_b.check_digest(version)  # the model's files came with the run
        assert gitml.sklearn.load_model("models:/churn@production") is not None
    assert pull(b).updated == {}  # up to date: nothing moves twice
    fsck(b.path)


def test_plain_git_push_and_fetch_after_remote_setup(
    a: Machine, b: Machine, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(a.path)
    assert "added remote.origin.push = refs/gitml/*:refs/gitml/*" in cli("remote", "setup").output
    config = a.git("config", "--get-regexp", r"^remote\.origin\.")
    assert "already has" in cli("remote", "setup", "origin").output  # idempotent
    assert a.git("config", "--get-regexp", r"^remote\.origin\.") == config
    assert "remote.origin.fetch refs/gitml/*:refs/gitml/*" in config
    assert "refs/remotes/origin/gitml" not in config  # +refs/heads/*:refs/remotes/origin/* does it
    a.git("remote", "add", "-t", "main", "narrow", str(remote))  # fetches main only
    assert (
        "+refs/heads/gitml/*:refs/remotes/narrow/gitml/*" in cli("remote", "setup", "narrow").output
    )
    with on(a, monkeypatch) as client:
        run_id, _, _ = log_iris_run(client)
        registry = Registry(client)
        registry.register(f"runs:/{run_id}/model", "churn")
        Stages(registry, client.config).assign("churn", 1, "staging")
    a.git("push", "-q")  # no arguments: the configured refspecs
    assert refs_of(remote, "refs/gitml/") == a.refs()
    assert refs_of(remote, "refs/heads/gitml/") == a.refs("refs/heads/gitml/")

    with on(b, monkeypatch) as client_b:
        assert list(client_b.search_runs()) == []
        monkeypatch.chdir(b.path)
        added = cli("remote", "setup").output
        assert "refs/remotes" not in added  # the clone's refs/heads/* refspec covers stages
        b.git("fetch", "-q")
        assert b.refs() == a.refs()
        assert b.git("rev-parse", "origin/gitml/staging") == a.git("rev-parse", "gitml/staging")
        # The index notices refs that git (not gitml) wrote.
        assert [r.id for r in client_b.search_runs()] == [run_id]
        mine = log_run(client_b, "from-b")
        Registry(client_b).register(f"runs:/{run_id}/model", "churn")
    b.git("push", "-q")
    a.git("fetch", "-q")
    assert a.refs() == b.refs()
    with on(a, monkeypatch) as client:
        assert client.get_run(mine).name == "from-b"
        assert [v.version for v in Registry(client).versions("churn")] == [1, 2]

    # And across: plain git push is read by gitml pull, gitml push by plain git fetch.
    with on(a, monkeypatch) as client:
        again = log_run(client, "plain-push")
    a.git("push", "-q")
    assert RUNS + again in pull(b).updated
    with on(b, monkeypatch) as client_b:
        last = log_run(client_b, "gitml-push")
    assert RUNS + last in push(b).pushed
    a.git("fetch", "-q")
    assert RUNS + last in a.refs()


def test_renumbering_a_model_leaves_another_models_stage_commits_alone(
    a: Machine, b: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``churn`` is renumbered; a stage commit of ``churn2`` (whose name starts with
    ``churn``) keeps its ``Gitml-Version`` trailer."""
    with on(a, monkeypatch) as client:
        first, _, _ = log_iris_run(client)
        Registry(client).register(f"runs:/{first}/model", "churn2")
    push(a)
    pull(b)
    with on(a, monkeypatch) as client:
        assert Registry(client).register(f"runs:/{first}/model", "churn").version == 1
    with on(b, monkeypatch) as client_b:
        registry_b = Registry(client_b)
        assert registry_b.register(f"runs:/{first}/model", "churn").version == 1
        Stages(registry_b, client_b.config).assign("churn2", 1, "staging")
    assert push(a).pushed
    assert [str(r) for r in push(b).renumbered] == ["churn: your version 1 is now version 2"]
    message = b.git("log", "-1", "--format=%B", "gitml/staging")
    assert message.startswith("gitml: staging: churn2 v1")
    assert "Gitml-Model: churn2\nGitml-Version: 1" in message


def test_concurrent_pushers_lose_nothing(
    a: Machine, b: Machine, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each machine created the Default experiment on its own: one experiment, two commits.
    for machine in (a, b):
        with on(machine, monkeypatch) as client:
            for i in range(3):
                log_run(client, f"{machine.name}-{i}")
    script = """
        import sys
        import gitml
        from gitml.sharing import remote as sharing
        client = gitml.Client(identity=sys.argv[1])
        for i in range(3):
            run = client.create_run(run_name=f"late-{i}")
            client.set_terminated(run.id)
            client.flush()
            report = sharing.push(client.store, "origin")
            assert not report.problems, report.problems
        client.close()
    """
    procs = [spawn(script, m.path, m.identity, env=child_env(Path(m.env["HOME"]))) for m in (a, b)]
    for proc in procs:
        code, _, err = finish(proc)
        assert code == 0, err
    pushed = refs_of(remote, RUNS)
    local = {**a.refs(RUNS), **b.refs(RUNS)}
    assert len(local) == 12 and pushed == local
    assert len(refs_of(remote, "refs/gitml/experiments/")) == 1
    # What waited to be pushed is gone, whether its push won or lost the race.
    assert a.refs("refs/gitml-outgoing/") == {} and b.refs("refs/gitml-outgoing/") == {}


def test_diverged_run_is_reported_not_overwritten(
    a: Machine, b: Machine, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with on(a, monkeypatch) as client:
        run_id = log_run(client, "shared")
    push(a)
    pull(b)
    with on(a, monkeypatch) as client:
        client.set_tag(run_id, "by", "A")
    with on(b, monkeypatch) as client_b:
        client_b.set_tag(run_id, "by", "B")
        extra = log_run(client_b, "innocent")
    push(a)
    on_remote = refs_of(remote, "refs/gitml/")
    report = push(b)
    assert any(f"run {run_id} has diverged" in p for p in report.problems)
    assert report.pushed == {} and refs_of(remote, "refs/gitml/") == on_remote
    assert RUNS + extra not in on_remote  # all or nothing
    mine = b.refs()[RUNS + run_id]
    pulled = pull(b)
    assert any("has diverged" in p and "nothing was overwritten" in p for p in pulled.problems)
    assert b.refs()[RUNS + run_id] == mine

    monkeypatch.chdir(b.path)
    result = cli("push", ok=False)
    assert result.exit_code == 1 and f"run {run_id} has diverged" in result.stderr


def test_stage_branch_that_is_not_a_fast_forward_is_refused(
    a: Machine, b: Machine, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with on(a, monkeypatch) as client:
        run_id, _, _ = log_iris_run(client)
        registry = Registry(client)
        registry.register(f"runs:/{run_id}/model", "churn")
        registry.register(f"runs:/{run_id}/model", "churn")
        Stages(registry, client.config).assign("churn", 1, "production")
    push(a)
    pull(b)
    with on(a, monkeypatch) as client:
        Stages(Registry(client), client.config).assign("churn", 2, "production")
    push(a)
    with on(b, monkeypatch) as client_b:
        Stages(Registry(client_b), client_b.config).remove("churn", "production")
    before = refs_of(remote, "refs/heads/gitml/")
    report = push(b)
    [problem] = report.problems
    assert "gitml/production is not a fast-forward" in problem and "never forced" in problem
    assert refs_of(remote, "refs/heads/gitml/") == before
    # Pulling leaves B's branch alone and says why.
    mine = b.refs("refs/heads/gitml/")
    assert any("branch gitml/production has diverged" in p for p in pull(b).problems)
    assert b.refs("refs/heads/gitml/") == mine


def test_missing_external_artifact_refuses_the_push(
    a: Machine, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(a.path, artifact_threshold=16)
    with on(a, monkeypatch) as client:
        run = client.create_run(run_name="big")
        client.log_text(run.id, "x" * 100, "weights.bin")
        client.set_terminated(run.id)
        small = log_run(client, "small")
        sha = client.list_artifacts(run.id)[0].sha256
    stored = a.path / ".git" / "gitml" / "artifacts" / sha[:2] / sha[2:]
    assert stored.is_file()
    hidden = stored.with_name("hidden")
    os.replace(stored, hidden)
    before = refs_of(remote, "refs/")
    report = push(a)
    [problem] = report.problems
    assert f"run {run.id}" in problem and "'weights.bin'" in problem and sha in problem
    assert refs_of(remote, "refs/") == before and report.pushed == {}
    assert RUNS + small not in refs_of(remote, RUNS)
    os.replace(hidden, stored)
    assert RUNS + run.id in push(a).pushed


def test_fetched_malformed_record_is_reported_and_not_applied(
    a: Machine, b: Machine, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with on(a, monkeypatch) as client:
        bad = log_run(client, "to-break")
        good = log_run(client, "fine")
    push(a)
    pull(b)
    with on(a, monkeypatch) as client:
        client.set_tag(good, "round", "2")
    # Someone pushes a broken record with plain git.
    record = yamlio.load(a.git("show", f"{RUNS}{bad}:run.yaml").encode())
    record["status"] = "EXPLODED"
    commit_file_on_ref(a.path, RUNS + bad, "run.yaml", yamlio.dump(record).decode())
    a.git("push", "-q", "origin", f"{RUNS}{bad}:{RUNS}{bad}", f"{RUNS}{good}:{RUNS}{good}")
    before = b.refs()[RUNS + bad]
    report = pull(b)
    [problem] = report.problems
    assert f"run {bad} not applied" in problem and "run.yaml" in problem and "status" in problem
    assert b.refs()[RUNS + bad] == before  # left as it was
    assert report.updated == {RUNS + good: a.refs()[RUNS + good]}  # the rest is applied
    monkeypatch.chdir(b.path)
    result = cli("pull", ok=False)
    assert result.exit_code == 1 and "status" in result.stderr


def test_a_run_ref_that_names_no_commit_is_refused(
    a: Machine, b: Machine, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tag or a tree holding a valid record is not a record's commit: git reads
    ``<tag>:run.yaml`` and ``<tree>:run.yaml`` as it reads the commit's file."""
    with on(a, monkeypatch) as client:
        tagged, treed, good = (log_run(client, name) for name in ("tagged", "treed", "good"))
    push(a)
    tag = subprocess.run(
        ["git", "mktag"],
        input=f"object {a.refs()[RUNS + tagged]}\ntype commit\ntag t\n"
        "tagger T <t@example.com> 0 +0000\n\nnot a record\n",
        cwd=remote,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    tree = a.git("rev-parse", f"{RUNS}{treed}^{{tree}}").strip()
    for ref, sha in ((RUNS + tagged, tag), (RUNS + treed, tree)):
        subprocess.run(["git", "update-ref", ref, sha], cwd=remote, check=True)
    report = pull(b)
    assert sorted(report.problems) == sorted(
        f"run {run_id} not applied: {RUNS}{run_id}:: field '(ref)': {sha[:12]} is not a commit"
        for run_id, sha in ((tagged, tag), (treed, tree))
    )
    assert {ref: sha for ref, sha in report.updated.items() if ref.startswith(RUNS)} == {
        RUNS + good: a.refs()[RUNS + good]
    }
    assert set(b.refs(RUNS)) == {RUNS + good}


@pytest.mark.slow
def test_a_fetched_billion_laughs_run_is_refused_at_once(
    a: Machine, b: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with on(a, monkeypatch) as client:
        run_id = log_run(client, "bomb")
    bomb = billion_laughs(a.git("show", f"{RUNS}{run_id}:run.yaml"))
    commit_file_on_ref(a.path, RUNS + run_id, "run.yaml", bomb)
    a.git("push", "-q", "origin", f"{RUNS}{run_id}:{RUNS}{run_id}")
    line = bomb.splitlines().index("  l1: &l1 [*l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0]") + 1
    done = subprocess.run(
        ["gitml", "pull"],
        cwd=b.path,
        env=b.env,
        preexec_fn=limit_memory(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert (
        f"error: run {run_id} not applied: {RUNS}{run_id}:run.yaml: field '(document)': "
        f"not valid YAML: line {line}: alias *l0: "
        "records take no anchors and aliases; write the value out"
    ) in done.stderr.splitlines()
    assert RUNS + run_id not in b.refs()


def test_a_pulled_manifest_path_that_escapes_the_run_is_not_applied(
    a: Machine, b: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with on(a, monkeypatch) as client:
        run_id = log_run(client, "shared")
        client.log_text(run_id, "weights", "model/w.txt")
    push(a)
    pull(b)
    before = b.refs()[RUNS + run_id]
    add_manifest_entry(a.path, run_id, "model/../../../.bashrc")
    a.git("push", "-q", "origin", f"{RUNS}{run_id}:{RUNS}{run_id}")
    [problem] = pull(b).problems
    assert f"run {run_id} not applied" in problem
    assert "artifacts.yaml: field 'artifacts.1.path': 'model/../../../.bashrc'" in problem
    assert b.refs()[RUNS + run_id] == before


@pytest.mark.parametrize("verb", ["push", "pull"])
def test_unknown_remote_is_one_clear_line(
    a: Machine, monkeypatch: pytest.MonkeyPatch, verb: str
) -> None:
    monkeypatch.chdir(a.path)
    before = a.refs()
    result = cli(verb, "upstream", ok=False)
    assert result.exit_code == 1
    assert "no remote 'upstream'" in result.stderr and "git remote add upstream" in result.stderr
    assert a.refs() == before


def test_a_first_pull_from_a_remote_that_is_not_there_says_why_and_leaves_nothing(
    a: Machine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not a.refs("refs/gitml/runs/")  # a first pull: it fetches while it lists
    a.git("remote", "set-url", "origin", str(tmp_path / "gone.git"))
    before = a.refs("refs/")
    monkeypatch.chdir(a.path)
    result = cli("pull", "origin", ok=False)
    assert result.exit_code == 1
    assert "git ls-remote failed" in result.stderr and "gone.git" in result.stderr
    assert a.refs("refs/") == before
    fsck(a.path)


@pytest.mark.parametrize("packed", [False, True])
def test_pull_moves_runs_together_without_reflogs_and_indexes_them(
    a: Machine, b: Machine, monkeypatch: pytest.MonkeyPatch, packed: bool
) -> None:
    with on(a, monkeypatch) as client:
        ids = sorted(log_run(client, f"r{i}") for i in range(3))
    push(a)
    # From PACK_FROM new runs a pull writes them into packed-refs, as git clone does.
    monkeypatch.setattr(sharing, "PACK_FROM", 3 if packed else 4)
    report = pull(b)
    assert set(report.updated) == {RUNS + i for i in ids} | {"refs/gitml/experiments/0"}
    assert not report.problems
    assert b.refs() == a.refs()
    runs = b.path / ".git" / "refs" / "gitml" / "runs"
    assert sorted(runs.iterdir() if runs.exists() else []) == (
        [] if packed else [runs / i for i in ids]
    )  # loose ref files
    packed_refs = b.path / ".git" / "packed-refs"
    listed = packed_refs.read_text() if packed_refs.exists() else ""
    assert all((f"{sha} {ref}\n" in listed) == packed for ref, sha in a.refs(RUNS).items())
    # Git keeps no reflog for refs/gitml/*, and neither does the pull.
    assert not (b.path / ".git" / "logs" / "refs" / "gitml").exists()
    # The pull filled the query index itself (status does not refresh it).
    s = store(b)
    index = QueryIndex(s)
    assert index.status()["runs"] == 3
    index.close()
    s.close()

    # Each run then moves as any other: pulled forward, and logged to here.
    with on(a, monkeypatch) as client:
        client.log_metric(ids[0], "acc", 0.9)
    push(a)
    assert pull(b).updated == {RUNS + ids[0]: a.refs(RUNS)[RUNS + ids[0]]}
    with on(b, monkeypatch) as client_b:
        client_b.log_metric(ids[1], "loss", 0.25)
        client_b.flush()
        found = client_b.search_runs(filter_string="metrics.acc > 0.8")
        assert [r.id for r in found] == [ids[0]]
        assert [r.id for r in client_b.search_runs(filter_string="metrics.loss < 1")] == [ids[1]]
    assert sorted(os.listdir(runs)) == (ids[:2] if packed else ids)
    fsck(b.path)


_CHECK_SHARE = sharing._canonical_share


def _check_share_noting_pid(root: Path, items: list[tuple[str, str]]) -> sharing.Checked:
    """``_canonical_share``, leaving a file named after the process that ran it, which
    says whether the cyclic collector ran there and at what niceness (a module-level
    function: the pool's workers find it by name)."""
    (Path(os.environ["PIDS"]) / str(os.getpid())).write_text(f"{gc.isenabled()} {os.nice(0)}")
    return _CHECK_SHARE(root, items)


@pytest.mark.parametrize(("shares", "frozen_already"), [(1, False), (2, False), (2, True)])
def test_a_large_pull_checks_runs_in_worker_processes_and_moves_them_in_batches(
    a: Machine,
    b: Machine,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    shares: int,
    frozen_already: bool,
) -> None:
    with on(a, monkeypatch) as client:
        ids = sorted(log_run(client, f"r{i}") for i in range(7))
    bad = ids[3]
    record = yamlio.load(a.git("show", f"{RUNS}{bad}:run.yaml").encode())
    record["status"] = "EXPLODED"
    commit_file_on_ref(a.path, RUNS + bad, "run.yaml", yamlio.dump(record).decode())
    a.git("push", "-q", "origin", "refs/gitml/*:refs/gitml/*")
    pids = tmp_path / "pids"
    pids.mkdir()
    monkeypatch.setenv("PIDS", str(pids))
    monkeypatch.setattr(sharing, "_canonical_share", _check_share_noting_pid)
    monkeypatch.setattr(sharing, "_shares", lambda count: shares)
    monkeypatch.setattr(sharing, "RUN_BATCH", 3)
    trace = tmp_path / "trace"
    monkeypatch.setenv("GIT_TRACE", str(trace))
    if frozen_already:  # as `gitml models serve` does once its model is loaded
        gc.freeze()
    # Another test may have served a model in this process too. What was frozen stays
    # frozen (and some of it may be freed meanwhile); nothing else is left frozen.
    frozen = gc.get_freeze_count() > 0
    report = pull(b)
    assert (gc.get_freeze_count() > 0) == frozen

    [problem] = report.problems
    assert f"run {bad} not applied" in problem and "status" in problem
    good = {RUNS + i for i in ids if i != bad}
    assert set(report.updated) == good | {"refs/gitml/experiments/0"}
    assert b.refs(RUNS) == {ref: sha for ref, sha in a.refs(RUNS).items() if ref in good}
    checkers = {int(p.name) for p in pids.iterdir()}
    if shares == 1:  # one batch, checked here
        assert checkers == {os.getpid()}
        assert traced_commands(trace).count("update-ref") == 2  # experiments; runs
    else:  # batches of 3 and then (of up to 6) 4, checked by forked workers, moved apart
        assert checkers and os.getpid() not in checkers
        assert traced_commands(trace).count("update-ref") == 3
        # No collector there, and a lower priority than the process moving their refs.
        nice = min(os.nice(0) + sharing.CHECKING_NICE, 19)
        assert {p.read_text() for p in pids.iterdir()} == {f"False {nice}"}
    assert gc.isenabled()  # here as it was
    s = store(b)
    index = QueryIndex(s)
    assert index.status()["runs"] == 6
    index.close()
    s.close()
    if frozen_already:
        gc.unfreeze()


def test_pull_checks_records_gitml_did_not_write_against_the_schema(
    a: Machine, b: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with on(a, monkeypatch) as client:
        edited, renamed, other = (log_run(client, name) for name in ("edited", "x", "y"))
    # Valid, but not as gitml writes it (flow style, keys out of order): still applied.
    record = yamlio.load(a.git("show", f"{RUNS}{edited}:run.yaml").encode())
    flow = "{" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in reversed(record.items())) + "}\n"
    commit_file_on_ref(a.path, RUNS + edited, "run.yaml", flow)
    # Exactly as gitml writes a run, on another run's ref: the id does not match.
    commit_file_on_ref(a.path, RUNS + renamed, "run.yaml", a.git("show", f"{RUNS}{other}:run.yaml"))
    a.git("push", "-q", "origin", "refs/gitml/*:refs/gitml/*")
    report = pull(b)
    [problem] = report.problems
    assert f"run {renamed} not applied" in problem and "id" in problem
    assert set(report.updated) == {RUNS + edited, RUNS + other, "refs/gitml/experiments/0"}
    with on(b, monkeypatch) as client_b:
        assert client_b.get_run(edited).name == "edited"
        assert {r.id for r in client_b.search_runs()} == {edited, other}


def test_a_pulled_run_whose_number_sqlite_cannot_hold_is_applied_and_skipped_by_the_index(
    a: Machine, b: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with on(a, monkeypatch) as client:
        big, fine = log_run(client, "big"), log_run(client, "fine")
    # Valid and exactly as gitml writes it, but a step past 64 bits, which SQLite refuses.
    record = yamlio.load(a.git("show", f"{RUNS}{big}:run.yaml").encode())
    record["metrics"]["acc"]["step"] = 2**64
    commit_file_on_ref(a.path, RUNS + big, "run.yaml", yamlio.dump(record).decode())
    a.git("push", "-q", "origin", "refs/gitml/*:refs/gitml/*")
    report = pull(b)
    assert {RUNS + big, RUNS + fine} <= set(report.updated) and not report.problems
    s = store(b)
    index = QueryIndex(s)
    try:
        assert index.status()["runs"] == 1
        [why] = index.broken()
        assert why.startswith(f"{RUNS}{big}:run.yaml: field 'metrics.acc.step': ")
    finally:
        index.close()
        s.close()
    with on(b, monkeypatch) as client_b:
        assert [r.id for r in client_b.search_runs()] == [fine]


def test_a_ref_moved_locally_is_left_out_of_the_batch(
    a: Machine, b: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with on(a, monkeypatch) as client:
        first, second = log_run(client, "first"), log_run(client, "second")
    push(a)
    tips = a.refs(RUNS)
    s = store(b)
    sharing.setup_remote(s)
    b.git("fetch", "-q", "origin", "refs/gitml/*:refs/gitml/*")
    b.git("update-ref", "-d", RUNS + second)
    report = sharing.PullReport("origin")
    # Planned from a stale listing: "first" is expected at another commit than it is.
    moves: dict[str, tuple[str | None, str]] = {
        RUNS + first: (tips[RUNS + second], tips[RUNS + first]),  # it is at its own tip
        RUNS + second: (None, tips[RUNS + second]),  # deleted here: it may be created
    }
    sharing._move_refs(s, moves, "gitml pull origin", report)
    s.close()
    assert report.updated == {RUNS + second: tips[RUNS + second]}
    assert report.problems == [f"run {first} moved locally during the pull; pull again"]
    assert b.refs(RUNS) == tips


def test_a_pull_with_nothing_new_lists_refs_and_fetches_nothing(
    a: Machine, b: Machine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with on(a, monkeypatch) as client:
        ids = [log_run(client, f"r{i}") for i in range(2)]
    push(a)
    assert {RUNS + i for i in ids} <= set(pull(b).updated)
    # What arrived moved the records' own refs and wrote no other.
    assert b.refs("refs/") == {
        **b.refs("refs/gitml/"),
        **b.refs("refs/heads/"),
        **b.refs("refs/remotes/"),
    }
    trace = tmp_path / "trace"
    monkeypatch.setenv("GIT_TRACE", str(trace))
    again = pull(b)
    assert again.updated == {} and not again.problems
    commands = traced_commands(trace)
    assert "ls-remote" in commands and "fetch" not in commands


def _fetches(trace: Path) -> list[str]:
    """The arguments of each ``git fetch`` a ``GIT_TRACE`` file recorded."""
    return [
        line[len("fetch ") :] for line in traced_command_lines(trace) if line.startswith("fetch ")
    ]


@pytest.mark.parametrize("glob_from", [1, 1_000])
def test_a_pull_fetches_only_missing_commits_and_many_by_refspec_without_moving_refs(
    a: Machine,
    b: Machine,
    remote: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    glob_from: int,
) -> None:
    with on(a, monkeypatch) as client:
        first = log_run(client, "first")
    push(a)
    pull(b)
    with on(a, monkeypatch) as client:
        ids = [log_run(client, f"r{i}") for i in range(2)]
        client.set_tag(first, "round", "2")
    push(a)
    monkeypatch.setattr(sharing, "GLOB_FETCH_FROM", glob_from)
    trace = tmp_path / "trace"
    monkeypatch.setenv("GIT_TRACE", str(trace))
    report = pull(b)
    assert set(report.updated) == {RUNS + i for i in [first, *ids]} and not report.problems
    assert b.refs(RUNS) == a.refs(RUNS)
    [fetch] = _fetches(trace)
    if glob_from == 1:  # gitml's refspecs, as a dry run: objects come, no ref moves
        assert "--dry-run" in fetch and "+refs/gitml/*:refs/gitml/*" in fetch
    else:  # the three new commits, named
        assert "--stdin" in fetch and "--dry-run" not in fetch
    assert not b.refs("refs/remotes/origin/gitml/runs/")
    fsck(b.path)

    # A first pull fetches by gitml's refspecs while it lists the refs: from a clone
    # made from a path, which holds every object the remote has, no pack comes.
    monkeypatch.delenv("GIT_TRACE")
    for local in (True, False):
        clone = Machine("C", tmp_path / f"clone-{local}", b.env)
        how = [] if local else ["--no-local"]
        subprocess.run(["git", "clone", "-q", *how, str(remote), clone.path], check=True, env=b.env)
        trace.unlink()
        monkeypatch.setenv("GIT_TRACE", str(trace))
        assert pull(clone).updated == a.refs("refs/gitml/")
        monkeypatch.delenv("GIT_TRACE")
        [fetch] = _fetches(trace)
        assert "--dry-run" in fetch and "+refs/gitml/*:refs/gitml/*" in fetch
        received = {"index-pack", "unpack-objects"} & set(traced_commands(trace))
        assert bool(received) != local
        # The dry run moved no ref; the pull moved the records' own.
        assert not clone.refs("refs/remotes/origin/gitml/runs/")
        fsck(clone.path)


def test_push_and_pull_tell_fast_forwards_without_a_git_process_per_ref(
    a: Machine, b: Machine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with on(a, monkeypatch) as client:
        ids = [log_run(client, f"r{i}") for i in range(3)]
    push(a)
    pull(b)
    with on(a, monkeypatch) as client:
        for run_id in ids:
            client.set_tag(run_id, "round", "2")
    trace = tmp_path / "trace"
    monkeypatch.setenv("GIT_TRACE", str(trace))
    assert set(push(a).pushed) == {RUNS + i for i in ids}
    report = pull(b)
    assert report.updated == {RUNS + i: a.refs(RUNS)[RUNS + i] for i in ids}
    assert "merge-base" not in traced_commands(trace)


def test_push_holds_back_a_ref_the_remote_is_ahead_of_and_pushes_the_rest(
    a: Machine, b: Machine, remote: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with on(a, monkeypatch) as client:
        shared = log_run(client, "shared")
    trace = tmp_path / "trace"
    monkeypatch.setenv("GIT_TRACE", str(trace))
    push(a)
    assert "update-ref" not in traced_commands(trace)  # pushed from the records' own refs
    monkeypatch.delenv("GIT_TRACE")
    pull(b)
    with on(a, monkeypatch) as client:
        client.set_tag(shared, "round", "2")
    push(a)
    with on(b, monkeypatch) as client_b:
        mine = log_run(client_b, "mine")
    report = push(b)
    assert set(report.pushed) == {RUNS + mine}
    assert f"run {shared}: the remote is ahead; 'gitml pull' brings it" in report.notes
    assert refs_of(remote, RUNS) == {
        RUNS + shared: a.refs(RUNS)[RUNS + shared],
        RUNS + mine: b.refs(RUNS)[RUNS + mine],
    }
    assert b.refs("refs/gitml-outgoing/") == {}


@pytest.mark.parametrize("count", [1, 999, 2_500, 10_000, 12_345, 100_000])
def test_a_pull_moves_runs_in_batches_small_at_both_ends(count: int) -> None:
    sizes = sharing._batches(count)
    assert sum(sizes) == count
    assert sizes[0] == min(count, sharing.RUN_BATCH) and sizes[-1] <= sharing.RUN_BATCH
    # Growing and shrinking by doubling: a few rewrites of packed-refs, however many runs.
    assert max(sizes) <= max(count // 2, sharing.RUN_BATCH)
    assert len(sizes) <= 2 * max(1, (count // sharing.RUN_BATCH).bit_length())
