"""Renumbering versions registered offline on two machines, as gitml push does it.

Two machines are two clones of one bare remote, each with its own identity;
every network step runs the real ``git``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gitml.format.layout import MODELS
from gitml.registry.declarations import read_declaration
from gitml.registry.stages import Stages
from gitml.registry.versions import Registry
from gitml.sharing.renumber import renumber_message
from testing.cli import cli
from testing.git import fsck
from testing.machines import Machine, on, pull, push, refs_of
from testing.registry import log_iris_run

RUNS = "refs/gitml/runs/"


def test_offline_version_5_on_both_machines_is_renumbered(
    a: Machine, b: Machine, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with on(a, monkeypatch) as client:
        first, _, _ = log_iris_run(client)
        registry = Registry(client)
        for _ in range(4):
            registry.register(f"runs:/{first}/model", "churn")
    push(a)
    pull(b)
    # Offline: each machine logs a model and registers it; both get version 5.
    with on(a, monkeypatch) as client:
        run_a, _, _ = log_iris_run(client)
        assert Registry(client).register(f"runs:/{run_a}/model", "churn").version == 5
    with on(b, monkeypatch) as client_b:
        run_b, _, _ = log_iris_run(client_b)
        registry_b = Registry(client_b)
        assert registry_b.register(f"runs:/{run_b}/model", "churn").version == 5
        assert registry_b.register(f"runs:/{run_b}/model", "churn").version == 6
        registry_b.update_version("churn", 5, description="from B")
        stages_b = Stages(registry_b, client_b.config)
        stages_b.assign("churn", 5, "staging")
        stages_b.assign("churn", 6, "production", propose=True)
    assert push(a).pushed
    before = b.git("rev-parse", MODELS + "churn").strip()

    # Plain git fetch does not overwrite B's offline versions (no forced refspec) ...
    monkeypatch.chdir(b.path)
    cli("remote", "setup")
    fetched = subprocess.run(
        ["git", "fetch"], cwd=b.path, env=b.env, capture_output=True, text=True, check=False
    )
    assert fetched.returncode == 1 and "refs/gitml/models/churn" in fetched.stderr
    assert "non-fast-forward" in fetched.stderr
    assert b.git("rev-parse", MODELS + "churn").strip() == before
    # ... and gitml push renumbers them.
    result = cli("push")
    assert "churn: your version 5 is now version 6" in result.output
    assert "churn: your version 6 is now version 7" in result.output
    with on(b, monkeypatch) as client_b:
        registry_b = Registry(client_b)
        versions = {v.version: v for v in registry_b.versions("churn")}
        assert sorted(versions) == [1, 2, 3, 4, 5, 6, 7]
        assert versions[5].run_id == run_a and versions[6].run_id == run_b
        assert versions[7].run_id == run_b and versions[6].description == "from B"
        declared = read_declaration(client_b.store, "staging", "churn")
        assert declared is not None and [v.version for v in declared.versions] == [6]
        # The declaration keeps B's digest: it names B's version under its new number.
        assert declared.versions[0].digest == versions[6].digest != versions[5].digest
        run_commit = versions[6].run_commit
    message = b.git("log", "-1", "--format=%B", "gitml/staging")
    assert message.startswith("gitml: staging: churn v6") and "Gitml-Version: 6" in message
    assert refs_of(remote, "refs/gitml/") == {**b.refs(), RUNS + run_a: a.refs()[RUNS + run_a]}
    assert refs_of(remote, "refs/heads/gitml/") == b.refs("refs/heads/gitml/")
    proposals = b.refs("refs/heads/gitml/proposals/")
    assert list(proposals) == ["refs/heads/gitml/proposals/production/churn-v7"]
    # Each new version's registration commit keeps its run's commit as second parent.
    tip = b.git("rev-parse", MODELS + "churn").strip()
    log = b.git("log", "--first-parent", "--format=%H %P%n%B%x00", tip).split("\0")
    six = next(entry for entry in log if "register churn version 6 " in entry)
    assert six.split()[2] == run_commit and "Gitml-Version: 6" in six
    assert (
        b.git("merge-base", "--is-ancestor", a.git("rev-parse", MODELS + "churn").strip(), tip)
        == ""
    )
    assert before != tip

    pull(a)
    with on(a, monkeypatch) as client:
        assert Registry(client).get_version("churn", 6).run_id == run_b
    fsck(remote)


def test_a_version_edited_on_both_sides_is_a_conflict(
    a: Machine, b: Machine, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with on(a, monkeypatch) as client:
        run_id, _, _ = log_iris_run(client)
        Registry(client).register(f"runs:/{run_id}/model", "churn")
    push(a)
    pull(b)
    with on(a, monkeypatch) as client:
        Registry(client).update_version("churn", 1, description="said A")
    push(a)
    with on(b, monkeypatch) as client_b:
        Registry(client_b).update_version("churn", 1, description="said B")
    mine = b.refs()[MODELS + "churn"]
    pulled = pull(b)
    assert any("both sides added commits" in note for note in pulled.notes)
    before = refs_of(remote, "refs/")
    monkeypatch.chdir(b.path)
    line = cli("push", ok=False).stderr
    assert "versions/1.yaml was changed both here and on the remote" in line
    assert refs_of(remote, "refs/") == before and b.refs()[MODELS + "churn"] == mine


def test_commit_messages_follow_the_new_numbers_of_one_model_only() -> None:
    message = (
        "gitml: register churn version 5 from run abc\n\n"
        "churn v5 beside other v5 and churn v12\n\n"
        "Gitml-Model: churn\nGitml-Version: 5"
    )
    assert renumber_message(message, {5: 6, 12: 13}, "churn") == (
        "gitml: register churn version 6 from run abc\n\n"
        "churn v6 beside other v5 and churn v13\n\n"
        "Gitml-Model: churn\nGitml-Version: 6"
    )
    assert renumber_message(message, {7: 8}, "churn") == message
