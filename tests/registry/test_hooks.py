"""``gitml hook pre-receive`` behind a real ``git push`` to a real bare repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

import gitml
from gitml.format.records import Config
from gitml.git.store import Change, Store
from gitml.registry.stages import Stages
from gitml.registry.versions import Registry
from testing.artifacts import add_manifest_entry, external_model_run
from testing.cli import cli
from testing.git import FixedClock, commit_file_on_ref, git, init_repo
from testing.procs import limit_memory
from testing.records import billion_laughs
from testing.registry import log_iris_run

pytestmark = pytest.mark.slow

POLICY = {
    "policy": {
        "ordered": True,
        "stages": {
            "production": {
                "authors": ["*@ops.example.com"],
                "metrics": ["metrics.accuracy >= 0.9"],
            }
        },
    }
}
GITML_REFS = "refs/gitml/*:refs/gitml/*"


class Remote:
    """A bare server with the hook installed, and the work repository that pushes to it."""

    def __init__(self, work: Path, server: Path) -> None:
        self.work = work
        self.server = server

    def push(self, *refspecs: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "push", "--porcelain", "origin", *refspecs],
            cwd=self.work,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    def refs(self) -> str:
        return git(self.server, "for-each-ref", "--format=%(objectname) %(refname)")

    def rejected(self, *refspecs: str) -> str:
        before = self.refs()
        done = self.push(*refspecs)
        assert done.returncode != 0, done.stdout + done.stderr
        assert "pre-receive hook declined" in done.stdout + done.stderr
        assert self.refs() == before  # nothing moved
        return done.stderr


@pytest.fixture
def remote(repo: Path, tmp_path: Path) -> Remote:
    server = init_repo(tmp_path / "server.git", bare=True)
    cli("hook", "install", "--server", "--repo", str(server))
    # The server's policy is the .gitml.yaml on its default branch.
    (repo / ".gitml.yaml").write_text(yaml.safe_dump(POLICY))
    git(repo, "add", ".gitml.yaml")
    git(repo, "commit", "-q", "-m", "promotion policy")
    git(repo, "remote", "add", "origin", str(server))
    git(repo, "push", "-q", "origin", "main")
    (repo / ".gitml.yaml").unlink()  # locally, no policy: the server must catch it all
    git(repo, "commit", "-q", "-am", "no local policy")
    return Remote(repo, server)


def registry(identity: str = "Ops <ops@ops.example.com>") -> Registry:
    return Registry(gitml.Client(clock=FixedClock(), identity=identity))


def stages(reg: Registry) -> Stages:
    return Stages(reg, Config())


def two_versions() -> Registry:
    reg = registry()
    good, _, _ = log_iris_run(reg.client, metrics={"accuracy": 0.95})
    reg.register(f"runs:/{good}/model", "churn")
    weak, _, _ = log_iris_run(reg.client, metrics={"accuracy": 0.7})
    reg.register(f"runs:/{weak}/model", "churn")
    return reg


def declare(work: Path, stage: str, versions: list[dict[str, int]]) -> None:
    content = yaml.safe_dump({"model": "churn", "versions": versions})
    ref = f"refs/heads/gitml/{stage}"
    blob = git(work, "hash-object", "-w", "--stdin", stdin=content).strip()
    tree = git(work, "mktree", stdin=f"100644 blob {blob}\tchurn.yaml\n").strip()
    root = git(work, "mktree", stdin=f"040000 tree {tree}\tmodels\n").strip()
    tip = git(work, "rev-parse", ref).strip()
    commit = git(work, "commit-tree", root, "-p", tip, "-m", "hand-edited").strip()
    git(work, "update-ref", ref, commit, tip)


def test_install_refuses_a_foreign_hook_unless_forced(tmp_path: Path) -> None:
    server = init_repo(tmp_path / "s.git", bare=True)
    hook = server / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\nexit 0\n")
    result = cli("hook", "install", "--server", "--repo", str(server), ok=False)
    assert result.exit_code == 1
    assert "already exists and is not gitml's" in result.stderr and "--force" in result.stderr
    cli("hook", "install", "--server", "--repo", str(server), "--force")
    assert "gitml pre-receive hook" in hook.read_text()
    cli("hook", "install", "--server", "--repo", str(server))  # its own: replaced quietly
    assert hook.stat().st_mode & 0o111
    result = cli("hook", "install", "--server", "--repo", str(tmp_path / "nothing"), ok=False)
    assert "is not a Git repository" in result.stderr


def test_pushes_that_keep_the_rules_are_accepted(remote: Remote) -> None:
    reg = two_versions()
    stage = stages(reg)
    stage.assign("churn", 1, "staging")
    # The run, the model and the stage declaring it land in one push.
    done = remote.push(GITML_REFS, "gitml/staging")
    assert done.returncode == 0, done.stderr
    stage.assign("churn", 1, "production")
    stage.assign("churn", 2, "staging")
    done = remote.push(GITML_REFS, "gitml/staging", "gitml/production")
    assert done.returncode == 0, done.stderr
    assert "refs/heads/gitml/production" in remote.refs()
    # A proposal that breaks no rule, then its deletion.
    stage.assign("churn", 1, "archived", propose=True)
    assert remote.push("gitml/proposals/archived/churn-v1").returncode == 0
    assert remote.push(":gitml/proposals/archived/churn-v1").returncode == 0


def test_weights_that_do_not_sum_to_100_are_rejected(remote: Remote) -> None:
    stages(two_versions()).assign("churn", 1, "staging")
    assert remote.push(GITML_REFS, "gitml/staging").returncode == 0
    declare(remote.work, "staging", [{"version": 1, "weight": 90}])
    err = remote.rejected("gitml/staging")
    assert (
        "remote: refs/heads/gitml/staging:models/churn.yaml: field 'versions': "
        "weights sum to 90, not 100"
    ) in err
    assert "remote: gitml: push rejected: 1 problem(s) in refs/heads/gitml/staging" in err


def test_a_version_that_does_not_exist_is_rejected(remote: Remote) -> None:
    stages(two_versions()).assign("churn", 1, "staging")
    declare(remote.work, "staging", [{"version": 7, "weight": 100}])
    err = remote.rejected(GITML_REFS, "gitml/staging")
    assert (
        "remote: refs/heads/gitml/staging:models/churn.yaml: field 'versions.0.version': "
        "model 'churn' has no version 7"
    ) in err


def test_production_without_staging_is_rejected(remote: Remote) -> None:
    stage = stages(two_versions())
    stage.assign("churn", 1, "staging")
    assert remote.push(GITML_REFS, "gitml/staging").returncode == 0
    stage.assign("churn", 2, "production")
    err = remote.rejected("gitml/production")
    assert "models/churn.yaml: field 'versions.0.version': policy ordered" in err
    assert "version 2 of 'churn' was never declared on stage 'staging'" in err
    # Its accuracy is 0.7 too; both rules are reported.
    assert "policy stages.production.metrics.0 'metrics.accuracy >= 0.9'" in err
    assert "false for metrics.accuracy = 0.7" in err


def test_an_author_the_policy_does_not_allow_is_rejected(remote: Remote) -> None:
    stages(two_versions()).assign("churn", 1, "staging")
    assert remote.push(GITML_REFS, "gitml/staging").returncode == 0
    eve = registry("Eve <eve@example.com>")
    stages(eve).assign("churn", 1, "production")
    err = remote.rejected("gitml/production")
    assert (
        "field '(document)': policy stages.production.authors: Eve <eve@example.com> "
        "may not change stage 'production' (allowed: *@ops.example.com)"
    ) in err


def test_a_malformed_version_record_is_rejected(remote: Remote) -> None:
    two_versions()
    store = Store(remote.work)
    ref = "refs/gitml/models/churn"
    record = yaml.safe_load(git(remote.work, "show", f"{ref}:versions/2.yaml"))
    record["version"] = 3
    del record["user"]
    store.update(
        ref, lambda snap: Change({"versions/2.yaml": yaml.safe_dump(record).encode()}), "x"
    )
    store.close()
    err = remote.rejected(GITML_REFS)
    assert f"remote: {ref}:versions/2.yaml: field '(document)': 'user' is a required" in err


def test_a_manifest_path_that_escapes_the_run_is_rejected(remote: Remote) -> None:
    run_id = external_model_run(gitml.Client())
    add_manifest_entry(remote.work, run_id, "model/../../../.bashrc")
    err = remote.rejected(f"refs/gitml/runs/{run_id}")
    assert (
        f"remote: refs/gitml/runs/{run_id}:artifacts.yaml: field 'artifacts.1.path': "
        "'model/../../../.bashrc' does not match"
    ) in err


def test_deleting_a_stage_branch_is_rejected(remote: Remote) -> None:
    stages(two_versions()).assign("churn", 1, "staging")
    assert remote.push(GITML_REFS, "gitml/staging").returncode == 0
    err = remote.rejected(":gitml/staging")
    assert "refs/heads/gitml/staging:(ref): field '(ref)': deleting a stage branch" in err
    err = remote.rejected(":refs/gitml/models/churn")
    assert "deleting a registered model's ref is not allowed" in err


def test_objects_kept_as_a_pack_in_quarantine_are_read(remote: Remote) -> None:
    # receive.unpackLimit=1 keeps every push as a pack (the default unpacks small pushes
    # into loose objects): both must be visible to the hook.
    git(remote.server, "config", "receive.unpackLimit", "1")
    stage = stages(two_versions())
    stage.assign("churn", 2, "staging")
    declare(remote.work, "staging", [{"version": 2, "weight": 50}])
    err = remote.rejected(GITML_REFS, "gitml/staging")
    assert "weights sum to 50, not 100" in err
    stage.assign("churn", 2, "staging")  # back to 100
    assert remote.push(GITML_REFS, "gitml/staging").returncode == 0


def test_other_branches_are_not_checked(remote: Remote) -> None:
    (remote.work / "models").mkdir()
    (remote.work / "models" / "churn.yaml").write_text("not: a declaration\n")
    git(remote.work, "add", "models")
    git(remote.work, "commit", "-q", "-m", "unrelated")
    assert remote.push("main").returncode == 0


def test_pre_receive_reads_updates_in_process(remote: Remote, tmp_path: Path) -> None:
    """The library entry point, without git: what the hook prints for a bad tip."""
    from gitml.registry.hooks import ZERO, run_pre_receive

    stages(two_versions()).assign("churn", 1, "staging")
    commit_file_on_ref(remote.work, "refs/heads/gitml/staging", "README", "hello\n")
    tip = git(remote.work, "rev-parse", "gitml/staging").strip()
    env = {"GIT_DIR": str(remote.work / ".git")}
    lines = run_pre_receive(f"{ZERO} {tip} refs/heads/gitml/staging\n", env)
    # Declared v1 exists locally but refs/gitml/models/churn is local too: all fine.
    assert lines == []
    lines = run_pre_receive(f"{ZERO} {tip} refs/heads/gitml/nonsense\n", env)
    assert lines[1].startswith("refs/heads/gitml/nonsense:(branch): field '(ref)': 'nonsense'")


def test_a_billion_laughs_run_is_rejected_at_once(remote: Remote) -> None:
    client = gitml.Client()
    run_id = client.create_run().id
    client.close()
    ref = f"refs/gitml/runs/{run_id}"
    bomb = billion_laughs(git(remote.work, "show", f"{ref}:run.yaml"))
    commit_file_on_ref(remote.work, ref, "run.yaml", bomb)
    line = bomb.splitlines().index("  l1: &l1 [*l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0]") + 1
    before = remote.refs()
    # The hook inherits the push's memory limit: git runs it as a child.
    done = subprocess.run(
        ["git", "push", "--porcelain", "origin", GITML_REFS],
        cwd=remote.work,
        preexec_fn=limit_memory(),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode != 0 and "pre-receive hook declined" in done.stdout, done.stderr
    assert (
        f"remote: {ref}:run.yaml: field '(document)': not valid YAML: line {line}: alias *l0: "
        "records take no anchors and aliases; write the value out"
    ) in [line.rstrip() for line in done.stderr.splitlines()]  # git pads remote lines
    assert remote.refs() == before
