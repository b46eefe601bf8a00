"""Reading stages without the record models: the same answers, and the same errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import gitml
import gitml.registry.declarations
from gitml.errors import InvalidInput, InvalidRecord
from gitml.format.record_cache import ValidatedRecords
from gitml.registry.declarations import branch, check_name, declarations, declared, stage_tip
from gitml.registry.stages import Stages
from gitml.registry.validate import validate_ref
from gitml.registry.versions import Registry
from testing.cli import cli
from testing.git import git
from testing.registry import log_iris_run

ORIGIN = "refs/remotes/origin/gitml/production"


@pytest.fixture
def stages(repo: Path) -> Stages:
    client = gitml.Client(identity="Ada <ada@example.com>")
    registry = Registry(client)
    run_id, _, _ = log_iris_run(client)
    for _ in range(3):
        registry.register(f"runs:/{run_id}/model", "churn")
    return Stages(registry, client.config)


def as_json(stages: Stages, stage: str) -> dict[str, dict[str, object]]:
    """What the models say ``stage`` declares, in the JSON form ``declared`` answers."""
    return {m: d.model_dump(mode="json") for m, d in declarations(stages.store, stage).items()}


def refuse_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object) -> None:
        raise AssertionError("validated again")

    monkeypatch.setattr(gitml.registry.declarations, "parse_declaration", fail)


def commit_by_hand(repo: Path, stage: str, files: dict[str, str]) -> str:
    """Commit ``files`` on the stage branch from a linked worktree, as a person would."""
    tree = repo.parent / f"hand-{stage}"
    if not tree.exists():
        git(repo, "worktree", "add", "-q", str(tree), f"gitml/{stage}")
    for name, text in files.items():
        (tree / name).parent.mkdir(exist_ok=True)
        (tree / name).write_text(text)
        git(tree, "add", name)
    git(tree, "commit", "-q", "-m", "by hand")
    return git(tree, "rev-parse", "HEAD").strip()


def test_the_same_declarations_as_the_models_read_cold_and_warm(
    stages: Stages, monkeypatch: pytest.MonkeyPatch
) -> None:
    stages.assign("churn", 1, "production")
    stages.assign("churn", 2, "production", weight=10, message="canary")
    stages.assign("churn", 3, "staging")
    stages.assign("churn", 2, "staging", archive_existing=True)
    store = stages.store
    for stage in ("production", "staging", "archived"):
        commit = store.tip(branch(stage))
        assert commit is not None
        # Cold: a fresh cache folder has seen nothing.
        cold = declared(store, stage, commit, ValidatedRecords(store.data_dir / "cold"))
        assert cold == as_json(stages, stage) != {}
    digest = stages.registry.get_version("churn", 3).digest  # one run: every version's
    assert cold["churn"]["versions"] == [{"version": 3, "weight": 0, "digest": digest}]
    # Warm: the writer remembered what it wrote; no validation at all.
    refuse_validation(monkeypatch)
    commit = store.tip(branch("production"))
    assert commit is not None
    warm = declared(store, "production", commit, ValidatedRecords(store.data_dir))
    assert warm == {
        "churn": {
            "model": "churn",
            "versions": [
                {"version": 1, "weight": 90, "digest": digest},
                {"version": 2, "weight": 10, "digest": digest},
            ],
            "note": "canary",
        }
    }


def test_a_hand_written_bad_declaration_is_refused_every_time(repo: Path, stages: Stages) -> None:
    stages.assign("churn", 1, "production")
    commit = commit_by_hand(
        repo, "production", {"models/churn.yaml": "model: churn\nversions:\n- version: 0\n"}
    )
    cache = ValidatedRecords(stages.store.data_dir)
    for _ in range(2):
        with pytest.raises(InvalidRecord) as caught:
            declared(stages.store, "production", commit, cache)
        text = str(caught.value)
        assert "gitml/production" in text and "models/churn.yaml" in text
        assert "versions.0.version" in text


def test_valid_bytes_under_another_models_name_are_still_refused(
    repo: Path, stages: Stages, monkeypatch: pytest.MonkeyPatch
) -> None:
    stages.assign("churn", 1, "production")
    text = git(repo, "show", "gitml/production:models/churn.yaml")
    commit = commit_by_hand(repo, "production", {"models/fraud.yaml": text})
    with pytest.raises(InvalidRecord, match=r"models/fraud\.yaml.*model.*'churn' does not match"):
        declared(stages.store, "production", commit, ValidatedRecords(stages.store.data_dir))


def test_check_name() -> None:
    assert check_name("production", ["staging", "production"]) == "production"
    with pytest.raises(InvalidInput, match="not one of this project's stages"):
        check_name("qa", ["staging", "production"])
    for bad in ("Prod", "proposals", "a/b", ""):
        with pytest.raises(InvalidInput, match="use lowercase letters"):
            check_name(bad)


def test_the_cache_lives_in_the_repository_data_folder(stages: Stages) -> None:
    stages.assign("churn", 1, "production")
    assert os.path.exists(stages.store.data_dir / "validated.sqlite")


def test_readers_take_a_remote_tracking_stage_that_is_ahead_or_alone(
    repo: Path, stages: Stages, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = stages.assign("churn", 1, "production").commit
    second = stages.assign("churn", 2, "production").commit
    # What `git fetch` leaves when the remote's gitml/production moved on.
    git(repo, "update-ref", "refs/remotes/origin/gitml/production", second)
    git(repo, "update-ref", "refs/heads/gitml/production", first)
    behind = stage_tip(stages.store, "production")
    assert (behind.ref, behind.commit, behind.local) == (ORIGIN, second, first)
    assert (behind.remote, behind.name) == ("origin", "origin/gitml/production")
    assert [v.version for v in declarations(stages.store, "production")["churn"].versions] == [2]
    monkeypatch.chdir(repo)
    shown = cli("stage", "show", "production", "--json")
    assert [(s["ref"], s["commit"]) for s in json.loads(shown.stdout)] == [(ORIGIN, second)]
    assert shown.stderr == (
        "reading origin/gitml/production: the local gitml/production is behind it "
        "('gitml pull origin' brings it here)\n"
    )
    history = cli("stage", "history", "production", "--json")
    assert [c["commit"] for c in json.loads(history.stdout)] == [second, first]
    assert "reading origin/gitml/production" in history.stderr

    # Missing here: the remote's, even if another remote's comes first by name.
    git(repo, "update-ref", "refs/remotes/backup/gitml/production", first)
    git(repo, "update-ref", "-d", "refs/heads/gitml/production")
    alone = stage_tip(stages.store, "production")
    assert (alone.ref, alone.local) == (ORIGIN, None)
    assert (
        "reading origin/gitml/production: no local gitml/production"
        in cli("stage", "show", "production").stderr
    )

    # A change is written on top of what readers see, so it can be pushed.
    third = stages.assign("churn", 3, "production").commit
    assert stages.store.commit_info(third).parents == (second,)
    # Ahead of the remote-tracking branch, or diverged from it: the local branch.
    assert stage_tip(stages.store, "production").ref == branch("production")
    git(repo, "update-ref", ORIGIN, first)
    git(repo, "update-ref", "refs/heads/gitml/production", second)
    stages.assign("churn", 1, "production")
    git(repo, "update-ref", ORIGIN, third)
    assert stage_tip(stages.store, "production").ref == branch("production")
    assert cli("stage", "show", "production").stderr == ""


def test_a_declaration_without_digests_stays_valid(repo: Path, stages: Stages) -> None:
    stages.assign("churn", 1, "production")
    old = "model: churn\nversions:\n- version: 2\n  weight: 100\nnote: null\n"
    commit = commit_by_hand(repo, "production", {"models/churn.yaml": old})
    found = declared(stages.store, "production", commit, ValidatedRecords(stages.store.data_dir))
    assert found["churn"]["versions"] == [{"version": 2, "weight": 100, "digest": None}]
    assert validate_ref(stages.store, "gitml/production", stages.config) == []
