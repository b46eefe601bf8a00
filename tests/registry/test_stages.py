"""Stages as branches: assignments, canaries, proposals, rollback, history, time travel."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import gitml
from gitml.errors import Conflict, InvalidInput, NotFound
from gitml.format import yamlio
from gitml.format.records import Config, ServedVersion, StageDeclaration
from gitml.registry.declarations import branch, read_declaration, weights_problem
from gitml.registry.stages import PRE_COMMIT_CONFIG, PRE_COMMIT_HOOKS, Stages
from gitml.registry.versions import Registry
from testing.git import FixedClock, fsck, git
from testing.registry import log_iris_run


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(1_700_000_000.0)


@pytest.fixture
def stages(repo: Path, clock: FixedClock) -> Stages:
    client = gitml.Client(clock=clock, identity="Ada <ada@example.com>")
    registry = Registry(client)
    run_id, _, _ = log_iris_run(client)
    for _ in range(4):
        registry.register(f"runs:/{run_id}/model", "churn")
    return Stages(registry, client.config)


def served(stages: Stages, stage: str) -> list[tuple[int, int]] | None:
    declared = read_declaration(stages.store, stage, "churn")
    return None if declared is None else [(v.version, v.weight) for v in declared.versions]


def test_assign_commits_a_declaration_on_the_stage_branch(repo: Path, stages: Stages) -> None:
    done = stages.assign("churn", 2, "production", message="better recall")
    assert done.ref == "refs/heads/gitml/production" and done.archived == []
    assert served(stages, "production") == [(2, 100)]
    text = git(repo, "show", "gitml/production:models/churn.yaml")
    # The version's digest too: the number alone may come to name another version.
    digest = stages.registry.get_version("churn", 2).digest
    assert yamlio.load(text.encode()) == {
        "model": "churn",
        "versions": [{"version": 2, "weight": 100, "digest": digest}],
        "note": "better recall",
    }
    message = git(repo, "log", "-1", "--format=%B", "gitml/production")
    assert message.splitlines()[0] == "gitml: production: churn v2"
    assert "better recall" in message
    assert "Gitml-Stage: production\nGitml-Model: churn\nGitml-Version: 2" in message
    author = git(repo, "log", "-1", "--format=%an <%ae>", "gitml/production").strip()
    assert author == "Ada <ada@example.com>"
    # The same assignment again changes nothing.
    assert stages.assign("churn", 2, "production", message="better recall").commit == done.commit
    fsck(repo)


def test_a_canary_splits_traffic_with_the_version_already_there(stages: Stages) -> None:
    stages.assign("churn", 1, "production")
    stages.assign("churn", 2, "production", weight=10)
    assert served(stages, "production") == [(1, 90), (2, 10)]
    declared = read_declaration(stages.store, "production", "churn")
    assert declared is not None
    digests = [stages.registry.get_version("churn", n).digest for n in (1, 2)]
    assert [v.digest for v in declared.versions] == digests
    stages.assign("churn", 2, "production", weight=50)
    assert served(stages, "production") == [(1, 50), (2, 50)]
    stages.assign("churn", 2, "production")
    assert served(stages, "production") == [(2, 100)]
    with pytest.raises(InvalidInput, match="needs exactly one other version"):
        stages.assign("churn", 3, "staging", weight=10)
    for bad in (0, 101, True, 1.5):
        with pytest.raises(InvalidInput, match="weight must be an integer from 1 to 100"):
            stages.assign("churn", 3, "production", weight=bad)  # type: ignore[arg-type]


def test_archive_existing_lists_the_replaced_versions(stages: Stages) -> None:
    stages.assign("churn", 1, "production")
    done = stages.assign("churn", 2, "production", archive_existing=True)
    assert done.archived == [1]
    assert served(stages, "archived") == [(1, 0)]
    stages.assign("churn", 3, "production", archive_existing=True)
    assert served(stages, "archived") == [(1, 0), (2, 0)]
    archived = read_declaration(stages.store, "archived", "churn")
    assert archived is not None
    digests = [stages.registry.get_version("churn", n).digest for n in (1, 2)]
    assert [v.digest for v in archived.versions] == digests
    # Archiving what is already archived adds nothing.
    stages.assign("churn", 3, "production", archive_existing=True)
    assert served(stages, "archived") == [(1, 0), (2, 0)]


def test_archive_lists_versions_on_the_archive_stage(stages: Stages) -> None:
    stages.archive("churn", [2, 1])
    assert served(stages, "archived") == [(2, 0), (1, 0)]
    stages.archive("churn", [1, 3])
    assert served(stages, "archived") == [(2, 0), (1, 0), (3, 0)]
    with pytest.raises(NotFound, match="no version 9"):
        stages.archive("churn", [9])
    assert served(stages, "archived") == [(2, 0), (1, 0), (3, 0)]


def test_a_proposal_is_a_branch_on_top_of_the_stage(repo: Path, stages: Stages) -> None:
    stages.assign("churn", 1, "production")
    stage_tip = stages.store.tip(branch("production"))
    proposal = stages.assign("churn", 2, "production", propose=True, message="try v2")
    assert proposal.ref == "refs/heads/gitml/proposals/production/churn-v2"
    assert served(stages, "production") == [(1, 100)]  # the stage itself did not move
    parents = git(repo, "rev-list", "--parents", "-n1", proposal.commit).split()[1:]
    assert parents == [stage_tip]
    shown = git(repo, "show", "gitml/proposals/production/churn-v2:models/churn.yaml")
    assert "version: 2" in shown
    with pytest.raises(Conflict, match="already exists"):
        stages.assign("churn", 2, "production", propose=True)
    # Merging the proposal, as a pull request would, is what promotes.
    git(repo, "branch", "-f", "gitml/production", "gitml/proposals/production/churn-v2")
    assert served(stages, "production") == [(2, 100)]


def test_a_proposal_keeps_the_rest_of_the_stage(repo: Path, stages: Stages) -> None:
    registry = stages.registry
    run_id = registry.get_version("churn", 1).run_id
    registry.register(f"runs:/{run_id}/model", "fraud")
    stages.assign("churn", 1, "production")
    stages.assign("fraud", 1, "production")
    stages.assign("churn", 2, "production", propose=True)
    proposal = "gitml/proposals/production/churn-v2"
    listed = git(repo, "ls-tree", "-r", "--name-only", proposal).split()
    assert listed == [PRE_COMMIT_CONFIG, "models/churn.yaml", "models/fraud.yaml"]
    # Merging it, as a pull request would, changes churn alone.
    git(repo, "branch", "-f", "gitml/production", proposal)
    assert served(stages, "production") == [(2, 100)]
    assert read_declaration(stages.store, "production", "fraud") is not None
    fsck(repo)


@pytest.mark.parametrize("how", ["assign", "archive", "propose"])
def test_a_stage_branch_is_created_with_its_pre_commit_config(
    repo: Path, stages: Stages, how: str
) -> None:
    if how == "assign":
        stages.assign("churn", 1, "staging")
    elif how == "archive":
        stages.assign("churn", 1, "staging")
        stages.assign("churn", 2, "staging", archive_existing=True)
    else:
        stages.assign("churn", 1, "staging", propose=True)
    stage = "archived" if how == "archive" else "staging"
    first = git(repo, "rev-list", "--max-parents=0", f"gitml/{stage}").strip()
    assert git(repo, "show", f"{first}:{PRE_COMMIT_CONFIG}").encode() == PRE_COMMIT_HOOKS
    config = yaml.safe_load(PRE_COMMIT_HOOKS)
    [hook] = config["repos"][0]["hooks"]
    assert (hook["id"], hook["entry"], hook["files"]) == (
        "gitml-validate",
        "gitml validate",
        r"^models/[^/]+\.yaml$",
    )


def test_a_proposal_to_a_new_stage_creates_the_stage_branch(stages: Stages) -> None:
    proposal = stages.assign("churn", 1, "staging", propose=True)
    base = stages.store.tip(branch("staging"))
    assert base is not None and stages.store.commit_info(proposal.commit).parents == (base,)
    assert served(stages, "staging") is None


def test_rollback_restores_the_previous_declaration(stages: Stages) -> None:
    stages.assign("churn", 1, "production")
    stages.assign("churn", 2, "production", weight=20)
    stages.assign("churn", 3, "production")
    back = stages.rollback("production", "churn", message="v3 regressed")
    assert back.summary == "v3 -> v1 (80%) + v2 (20%)"
    assert served(stages, "production") == [(1, 80), (2, 20)]
    message = stages.store.commit_info(back.commit).message
    assert "v3 regressed" in message and "Gitml-Rollback-Of: " in message
    with pytest.raises(NotFound, match="never declared 'other'"):
        stages.rollback("production", "other")


def test_rollback_of_a_first_declaration_has_nothing_to_go_back_to(stages: Stages) -> None:
    stages.assign("churn", 1, "staging")
    before = stages.store.tip(branch("staging"))
    with pytest.raises(InvalidInput, match="nothing to roll back to"):
        stages.rollback("staging", "churn")
    assert stages.store.tip(branch("staging")) == before


def test_history_says_who_changed_what_and_through_which_merge(
    repo: Path, stages: Stages, clock: FixedClock
) -> None:
    stages.assign("churn", 1, "production")
    clock.advance(60)
    proposal = stages.assign("churn", 2, "production", propose=True)
    tip = stages.store.tip(branch("production"))
    tree = git(repo, "rev-parse", f"{proposal.commit}^{{tree}}").strip()
    merge = git(
        repo, "commit-tree", tree, "-p", tip or "", "-p", proposal.commit, "-m", "Merge pull #7"
    ).strip()
    git(repo, "update-ref", "refs/heads/gitml/production", merge, tip or "")
    clock.advance(60)
    stages.remove("churn", "production")
    changes = list(stages.history("production"))
    assert [c.summary for c in changes] == ["v2 -> nothing", "v1 -> v2", "nothing -> v1"]
    assert changes[1].merge == proposal.commit and changes[1].subject == "Merge pull #7"
    assert changes[2].author == "Ada <ada@example.com>" and changes[2].merge is None
    assert changes[2].time == 1_700_000_000
    assert list(stages.history("production", model="other")) == []


def test_show_at_a_time_is_what_was_declared_then(stages: Stages, clock: FixedClock) -> None:
    stages.assign("churn", 1, "production")
    clock.advance(3600)
    stages.assign("churn", 2, "production")
    start = 1_700_000_000
    assert stages.show("production", at=start - 1) == {}
    assert stages.show("production", at=start)["churn"].versions[0].version == 1
    assert stages.show("production", at=start + 3599)["churn"].versions[0].version == 1
    assert stages.show("production", at=start + 3600)["churn"].versions[0].version == 2
    assert stages.show("production")["churn"].versions[0].version == 2
    assert stages.show("staging") == {}


def test_stage_and_version_errors_change_nothing(stages: Stages) -> None:
    stages.registry.delete_version("churn", 4)
    cases = [
        (lambda: stages.assign("churn", 1, "prod"), InvalidInput, "not one of this project"),
        (lambda: stages.assign("churn", 1, "Prod"), InvalidInput, "use lowercase letters"),
        (lambda: stages.assign("churn", 1, "proposals"), InvalidInput, "use lowercase"),
        (lambda: stages.assign("churn", 9, "production"), NotFound, "has no version 9"),
        (lambda: stages.assign("churn", 4, "production"), InvalidInput, "version 4 was deleted"),
        (lambda: stages.assign("other", 1, "production"), NotFound, "no registered model"),
        (lambda: stages.remove("churn", "production"), NotFound, "declares no version"),
    ]
    for call, error, words in cases:
        with pytest.raises(error, match=words):
            call()
    assert stages.store.refs("refs/heads/gitml/") == {}


def test_configured_stages_and_weights(stages: Stages) -> None:
    config = Config(stages=["dev", "live", "retired"], archive_stage="retired")
    custom = Stages(stages.registry, config)
    custom.assign("churn", 1, "live")
    with pytest.raises(InvalidInput, match=r"\(dev, live, retired\)"):
        custom.assign("churn", 1, "production")
    canary = StageDeclaration(
        model="churn", versions=[ServedVersion(version=1, weight=60), ServedVersion(version=2)]
    )
    assert weights_problem(canary, "live", config) == "weights sum to 160, not 100"
    assert weights_problem(canary, "retired", config) is None
    twice = StageDeclaration(model="churn", versions=[ServedVersion(version=1, weight=50)] * 2)
    assert weights_problem(twice, "live", config) == "a version is listed twice"


def test_rollback_of_one_model_ignores_later_changes_to_others(stages: Stages) -> None:
    stages.assign("churn", 1, "production")
    stages.assign("churn", 2, "production")
    registry = stages.registry
    run_id = registry.get_version("churn", 1).run_id
    registry.register(f"runs:/{run_id}/model", "other")
    stages.assign("other", 1, "production")  # the branch moves after churn's last change
    back = stages.rollback("production", "churn")
    assert back.summary == "v2 -> v1"
    assert served(stages, "production") == [(1, 100)]
    assert stages.show("production")["other"].versions[0].version == 1
