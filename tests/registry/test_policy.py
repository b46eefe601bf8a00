"""The promotion policy: ordered stages, ``after``, metric conditions, tags, authors."""

from __future__ import annotations

from pathlib import Path

import pytest

import gitml
from gitml.errors import InvalidInput
from gitml.format.records import Config, MetricValue, Policy, Run, StageDeclaration, StagePolicy
from gitml.registry.declarations import read_declaration
from gitml.registry.policy import (
    CHANGE_RULES,
    VERSION_RULES,
    PolicyCheck,
    author_parts,
    check_condition,
)
from gitml.registry.stages import Stages
from gitml.registry.versions import Registry
from testing.git import FixedClock
from testing.registry import log_iris_run

RUN = Run(
    id="0" * 32,
    experiment_id="0",
    name="iris",
    status="FINISHED",
    start_time=1000,
    user="ada",
    params={"alpha": "0.1", "p": "100%x", "q": "ÄB"},
    tags={"team": "growth"},
    metrics={
        "accuracy": MetricValue(value=0.93, step=3, timestamp=1),
        "loss": MetricValue(value=float("nan"), step=0, timestamp=1),
    },
)


@pytest.mark.parametrize(
    "condition",
    [
        "metrics.accuracy >= 0.9",
        "metrics.accuracy > 0.9 and metrics.accuracy < 1",
        "metrics.accuracy >= 0.99 OR params.alpha = '0.1'",
        "metric.accuracy != 0.5",
        "params.alpha LIKE '0.%'",
        "tags.team ILIKE 'GROW%'",
        "attributes.status = 'FINISHED'",
        "run_name = 'iris'",
        "start_time >= 1000",
        "end_time IS NULL",
        "metrics.f1 IS NULL",
        "run_id IN ('x', '00000000000000000000000000000000')",
        "metrics.loss != 1",
        "params.p LIKE '100\\%x'",
        "metrics.'accuracy' > 0.9",
        "tags.mlflow.runName = 'iris'",
        "attributes.artifact_uri = 'runs:/00000000000000000000000000000000/'",
        "",
    ],
)
def test_conditions_that_hold(condition: str) -> None:
    assert check_condition(condition, RUN) is None


@pytest.mark.parametrize(
    ("condition", "reason"),
    [
        ("metrics.accuracy >= 0.95", "false for metrics.accuracy = 0.93"),
        ("metrics.f1 >= 0.5", "the run has no metric 'f1'"),
        ("metrics.f1 > 0 or params.beta = 'x'", "the run has no metric 'f1', param 'beta'"),
        ("tags.team = 'core'", "false for tags.team = 'growth'"),
        ("status != 'FINISHED'", "false for status = 'FINISHED'"),
        ("metrics.loss < 1", "false for metrics.loss = nan"),
        ("metrics.accuracy IS NULL", "false for metrics.accuracy = 0.93"),
        ("params.q ILIKE 'äb'", "false for params.q = 'ÄB'"),
        ("params.p LIKE '100\\%'", "false for params.p = '100%x'"),
    ],
)
def test_conditions_that_fail_say_why(condition: str, reason: str) -> None:
    found = check_condition(condition, RUN)
    assert found is not None and found.startswith(reason), found


def test_a_condition_that_does_not_parse_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="expected"):
        check_condition("metrics.accuracy >>= 0.9", RUN)


def test_author_parts() -> None:
    assert author_parts("Ada Lovelace <ada@example.com>") == ("Ada Lovelace", "ada@example.com")
    assert author_parts("ci-bot") == ("ci-bot", "")


# -- against a real registry ------------------------------------------------------------


def make_stages(policy: Policy, identity: str = "Ada <ada@example.com>") -> Stages:
    client = gitml.Client(clock=FixedClock(), identity=identity)
    registry = Registry(client)
    return Stages(registry, Config(policy=policy))


@pytest.fixture
def registry(repo: Path) -> Registry:
    client = gitml.Client(clock=FixedClock(), identity="Ada <ada@example.com>")
    registry = Registry(client)
    run_id, _, _ = log_iris_run(client, metrics={"accuracy": 0.8})
    registry.register(f"runs:/{run_id}/model", "churn", tags={"reviewed": "yes"})
    good, _, _ = log_iris_run(client, metrics={"accuracy": 0.95})
    registry.register(f"runs:/{good}/model", "churn")
    return registry


def test_ordered_stages_need_the_stage_before(registry: Registry) -> None:
    stages = Stages(registry, Config(policy=Policy(ordered=True)))
    with pytest.raises(InvalidInput) as caught:
        stages.assign("churn", 1, "production")
    message = str(caught.value)
    assert message.startswith("stage 'production' refuses churn v1: policy ordered")
    assert "never declared on stage 'staging'" in message
    assert read_declaration(stages.store, "production", "churn") is None
    # Through staging, then production; staging moving on does not undo the history.
    stages.assign("churn", 1, "staging")
    stages.assign("churn", 2, "staging")
    stages.assign("churn", 1, "production")
    # The archive stage is outside the order, and staging is first.
    stages.assign("churn", 2, "archived")
    # A proposal is made whatever the policy says; validation reports it.
    done = stages.assign("churn", 2, "production", propose=True)
    assert done.ref == "refs/heads/gitml/proposals/production/churn-v2"


def test_after_metrics_and_tags(registry: Registry) -> None:
    policy = Policy(
        stages={
            "production": StagePolicy(
                after=["staging"], metrics=["metrics.accuracy >= 0.9"], tags=["reviewed"]
            )
        }
    )
    stages = Stages(registry, Config(policy=policy))
    stages.assign("churn", 1, "staging")
    with pytest.raises(InvalidInput) as caught:
        stages.assign("churn", 1, "production")
    message = str(caught.value)
    assert "policy stages.production.metrics.0 'metrics.accuracy >= 0.9'" in message
    assert "false for metrics.accuracy = 0.8" in message
    assert "reviewed" not in message  # version 1 has the tag
    with pytest.raises(InvalidInput) as caught:
        stages.assign("churn", 2, "production")
    message = str(caught.value)
    assert "policy stages.production.after: version 2" in message
    assert "lacks the tag(s) reviewed" in message
    registry.update_version("churn", 2, set_tags={"reviewed": "yes"})
    stages.assign("churn", 2, "staging")
    stages.assign("churn", 2, "production")
    assert read_declaration(stages.store, "production", "churn") is not None


def test_only_new_versions_meet_the_version_rules(registry: Registry) -> None:
    check = PolicyCheck(
        registry.store,
        Config(policy=Policy(stages={"production": StagePolicy(metrics=["metrics.f1 > 0"])})),
    )
    one = StageDeclaration.model_validate({"model": "churn", "versions": [{"version": 1}]})
    canary = StageDeclaration.model_validate(
        {"model": "churn", "versions": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]}
    )
    [problem] = check.change("production", "churn", one, canary, None)
    assert (problem.where, problem.path, problem.field) == (
        "refs/heads/gitml/production",
        "models/churn.yaml",
        "versions.1.version",
    )
    assert "the run has no metric 'f1' (version 2, run " in problem.reason
    assert check.change("production", "churn", canary, one, None) == []
    assert check.change("production", "churn", canary, None, None) == []


def test_authors_by_email_or_name(registry: Registry) -> None:
    rules = StagePolicy(authors=["*@ops.example.com", "release-bot"])
    check = PolicyCheck(registry.store, Config(policy=Policy(stages={"production": rules})))
    one = StageDeclaration.model_validate({"model": "churn", "versions": [{"version": 1}]})
    assert check.change("production", "churn", None, one, "Op <op@ops.example.com>") == []
    assert check.change("production", "churn", None, one, "release-bot <bot@ci>") == []
    assert check.change("production", "churn", None, one, None) == []  # a proposal
    [problem] = check.change("production", "churn", one, None, "Eve <eve@example.com>")
    assert str(problem) == (
        "refs/heads/gitml/production:models/churn.yaml: field '(document)': policy "
        "stages.production.authors: Eve <eve@example.com> may not change stage 'production' "
        "(allowed: *@ops.example.com, release-bot)"
    )
    # A direct assignment checks the store's identity.
    stages = Stages(registry, Config(policy=Policy(stages={"production": rules})))
    with pytest.raises(InvalidInput, match=r"Ada <ada@example.com> may not change"):
        stages.assign("churn", 1, "production")
    stages.assign("churn", 1, "staging")  # staging has no rules


def test_a_bad_condition_in_the_policy_is_reported(registry: Registry) -> None:
    rules = StagePolicy(metrics=["accuracy >= 0.9"])
    check = PolicyCheck(registry.store, Config(policy=Policy(stages={"production": rules})))
    one = StageDeclaration.model_validate({"model": "churn", "versions": [{"version": 1}]})
    [problem] = check.change("production", "churn", None, one, None)
    assert "not a valid condition: unknown attribute 'accuracy'" in problem.reason


def test_every_field_of_a_stages_policy_is_one_rule() -> None:
    assert sorted([*CHANGE_RULES, *VERSION_RULES]) == sorted(StagePolicy.model_fields)
