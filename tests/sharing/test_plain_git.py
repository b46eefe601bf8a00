"""Two people register the same version number offline and share through plain git.

Every plain-git path the README documents (``git push`` after ``gitml remote
setup``, ``git fetch``, ``git clone`` plus ``gitml remote setup``) against a
bare remote with gitml's pre-receive hook installed as the README says, in
both orders: a stage declaration names its version by number and digest, so
it can never come to serve the other person's model.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gitml.errors import Conflict
from gitml.format import yamlio
from gitml.git.store import Store
from gitml.registry.stages import Stages
from gitml.registry.validate import validate_refs
from gitml.registry.versions import Registry
from testing.cli import cli
from testing.git import git
from testing.machines import Machine, on, pull, push
from testing.registry import log_iris_run

pytestmark = pytest.mark.slow

MODEL = "refs/gitml/models/churn"


@pytest.fixture
def hooked(remote: Path) -> Path:
    cli("hook", "install", "--server", "--repo", str(remote))
    return remote


def share_two_versions(a: Machine, b: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """churn v1 and v2, registered by A, on the remote and on B."""
    with on(a, monkeypatch) as client:
        run_id, _, _ = log_iris_run(client)
        registry = Registry(client)
        registry.register(f"runs:/{run_id}/model", "churn")
        registry.register(f"runs:/{run_id}/model", "churn")
    assert not push(a).problems
    assert not pull(b).problems


def register_v3(machine: Machine, monkeypatch: pytest.MonkeyPatch, *stages: str) -> tuple[str, str]:
    """Offline: ``machine`` registers its own model as churn v3 (and assigns it to ``stages``)."""
    with on(machine, monkeypatch) as client:
        run_id, _, _ = log_iris_run(client)
        registry = Registry(client)
        version = registry.register(f"runs:/{run_id}/model", "churn")
        assert version.version == 3
        for stage in stages:
            Stages(registry, client.config).assign("churn", 3, stage)
    return run_id, version.digest


def plain_git(machine: Machine, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=machine.path, env=machine.env, capture_output=True, text=True
    )


def remote_record(remote: Path, rev: str, path: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yamlio.load(git(remote, "show", f"{rev}:{path}").encode())
    return loaded


def refused(stage: str, mine: tuple[str, str], theirs: tuple[str, str]) -> str:
    """The message for a stage declaring my v3 where the repository's v3 is theirs."""
    return (
        f"gitml/{stage} declares churn v3 (digest {mine[1][:19]}), but churn v3 here is the "
        f"version registered from run {theirs[0]} (digest {theirs[1][:19]}): "
        "this declaration would serve a different model"
    )


def test_a_plain_push_of_a_stage_naming_anothers_version_is_refused_then_renumbered(
    a: Machine, b: Machine, hooked: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    share_two_versions(a, b, monkeypatch)
    a_v3 = register_v3(a, monkeypatch)
    assert not push(a).problems
    b_v3 = register_v3(b, monkeypatch, "staging", "production")
    monkeypatch.chdir(b.path)
    cli("remote", "setup")
    # Plain git fetch brings A's run but leaves B's model ref (not a fast-forward) alone.
    fetched = plain_git(b, "fetch")
    assert fetched.returncode == 1 and f"{MODEL}" in fetched.stderr, fetched.stderr
    assert f"refs/gitml/runs/{a_v3[0]}" in b.refs()

    before = git(hooked, "for-each-ref")
    pushed = plain_git(b, "push")
    assert pushed.returncode == 1
    assert "pre-receive hook declined" in pushed.stderr, pushed.stderr
    for stage in ("staging", "production"):
        assert refused(stage, b_v3, a_v3) in pushed.stderr, pushed.stderr
    assert git(hooked, "for-each-ref") == before  # the hook refused every ref of the push

    result = cli("push")
    assert "churn: your version 3 is now version 4" in result.output
    for stage in ("staging", "production"):
        declared = remote_record(hooked, f"gitml/{stage}", "models/churn.yaml")
        assert declared["versions"] == [{"version": 4, "weight": 100, "digest": b_v3[1]}]
    assert remote_record(hooked, MODEL, "versions/4.yaml")["run_id"] == b_v3[0]
    assert remote_record(hooked, MODEL, "versions/3.yaml")["run_id"] == a_v3[0]
    server = Store(hooked)
    assert validate_refs(server) == []
    server.close()

    # A plain clone answers from the remote-tracking branches, and says so.
    clone = tmp_path / "c"
    git(tmp_path, "clone", "-q", str(hooked), str(clone), env=b.env)
    monkeypatch.chdir(clone)
    shown = cli("stage", "show", "production", "--json")
    (production,) = json.loads(shown.stdout)
    assert production["ref"] == "refs/remotes/origin/gitml/production"
    assert production["models"][0]["versions"] == [{"version": 4, "weight": 100, "digest": b_v3[1]}]
    assert "reading origin/gitml/production: no local gitml/production" in shown.stderr
    cli("remote", "setup")
    git(clone, "fetch", "-q", env=b.env)
    lineage = json.loads(cli("lineage", "stage:production", "--json").stdout)
    assert lineage["ref"] == "refs/remotes/origin/gitml/production"
    assert lineage["models"][0]["served"][0]["model_version"]["run"]["id"] == b_v3[0]


def test_a_plain_push_first_keeps_its_number_and_the_other_is_renumbered(
    a: Machine, b: Machine, hooked: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    share_two_versions(a, b, monkeypatch)
    a_v3 = register_v3(a, monkeypatch)
    b_v3 = register_v3(b, monkeypatch, "staging")
    monkeypatch.chdir(b.path)
    cli("remote", "setup")
    pushed = plain_git(b, "push")
    assert pushed.returncode == 0, pushed.stderr
    declared = remote_record(hooked, "gitml/staging", "models/churn.yaml")
    assert declared["versions"] == [{"version": 3, "weight": 100, "digest": b_v3[1]}]

    # A fetches with plain git: its own v3 stays, and staging arrives as origin/gitml/staging,
    # whose v3 is not A's: every reader that would serve it refuses, naming both.
    monkeypatch.chdir(a.path)
    cli("remote", "setup")
    assert plain_git(a, "fetch").returncode == 1  # churn: not a fast-forward
    shown = json.loads(cli("stage", "show", "staging", "--json").stdout)
    assert shown[0]["ref"] == "refs/remotes/origin/gitml/staging"
    checked = cli("validate", "--ref", "origin/gitml/staging", ok=False)
    assert checked.exit_code == 1
    assert refused("staging", b_v3, a_v3) in checked.output
    with on(a, monkeypatch) as client, pytest.raises(Conflict) as caught:
        Registry(client).resolve("models:/churn@staging")
    assert refused("staging", b_v3, a_v3) in str(caught.value)

    monkeypatch.chdir(a.path)
    assert "churn: your version 3 is now version 4" in cli("push").output
    assert remote_record(hooked, MODEL, "versions/3.yaml")["run_id"] == b_v3[0]
    assert remote_record(hooked, MODEL, "versions/4.yaml")["run_id"] == a_v3[0]
    assert remote_record(hooked, "gitml/staging", "models/churn.yaml") == declared
    assert plain_git(a, "fetch").returncode == 0
    cli("validate", "--ref", "origin/gitml/staging")
    with on(a, monkeypatch) as client:
        assert Registry(client).resolve("models:/churn@staging").run_id == b_v3[0]
