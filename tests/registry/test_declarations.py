"""Reading stages without the record models: the same answers, and the same errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import gitml
import gitml.registry.declarations
from gitml.errors import InvalidInput, InvalidRecord
from gitml.format.record_cache import ValidatedRecords
from gitml.registry.declarations import branch, check_name, declarations, declared
from gitml.registry.stages import Stages
from gitml.registry.versions import Registry
from testing.git import git
from testing.registry import log_iris_run


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
    assert cold["churn"]["versions"] == [{"version": 3, "weight": 0}]
    # Warm: the writer remembered what it wrote; no validation at all.
    refuse_validation(monkeypatch)
    commit = store.tip(branch("production"))
    assert commit is not None
    warm = declared(store, "production", commit, ValidatedRecords(store.data_dir))
    assert warm == {
        "churn": {
            "model": "churn",
            "versions": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}],
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
