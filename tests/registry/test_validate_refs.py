"""``gitml validate`` on models, stages and proposals: references, weights and policy."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import gitml
from gitml.format.records import Config, Policy
from gitml.git.store import Change, Store
from gitml.registry.stages import Stages
from gitml.registry.validate import validate_files, validate_ref, validate_refs
from gitml.registry.versions import Registry
from testing.artifacts import add_manifest_entry, external_model_run
from testing.cli import cli, one_error_line
from testing.git import FixedClock, git
from testing.registry import log_iris_run

MODEL = "refs/gitml/models/churn"


@pytest.fixture
def registry(repo: Path) -> Registry:
    client = gitml.Client(clock=FixedClock(), identity="Ada <ada@example.com>")
    registry = Registry(client)
    run_id, _, _ = log_iris_run(client, metrics={"accuracy": 0.9})
    registry.register(f"runs:/{run_id}/model", "churn")
    registry.register(f"runs:/{run_id}/model", "churn")
    return registry


def edit(store: Store, ref: str, files: dict[str, bytes | None]) -> str:
    tip = store.update(ref, lambda snap: Change(dict(files)), "gitml: hand edit")
    assert tip is not None
    return tip


def version_yaml(repo: Path, number: int, **changes: object) -> bytes:
    record = yaml.safe_load(git(repo, "show", f"{MODEL}:versions/{number}.yaml"))
    record.update(changes)
    return yaml.safe_dump(record).encode()


def test_a_good_registry_and_its_stages_pass(repo: Path, registry: Registry) -> None:
    stages = Stages(registry, Config())
    stages.assign("churn", 1, "staging")
    stages.assign("churn", 1, "production")
    stages.assign("churn", 2, "production", weight=10)
    stages.assign("churn", 2, "production", propose=True)
    assert validate_refs(registry.store) == []
    assert cli("validate", "--all").output == ""
    assert cli("validate", "--refs").output == ""  # the old spelling
    assert (
        cli("validate", "--ref", "gitml/production", "--ref", "refs/gitml/models/churn").output
        == ""
    )


def test_model_ref_problems_name_file_and_field(repo: Path, registry: Registry) -> None:
    store = registry.store
    other_run, _, _ = log_iris_run(registry.client)
    other_tip = store.tip(f"refs/gitml/runs/{other_run}")
    edit(
        store,
        MODEL,
        {
            "versions/1.yaml": version_yaml(repo, 1, version=3),
            "versions/2.yaml": version_yaml(repo, 2, digest="sha256:" + "0" * 64),
            "versions/07.yaml": b"x: 1\n",
        },
    )
    found = [str(p) for p in validate_ref(store, "refs/gitml/models/churn")]
    assert found[0] == (
        f"{MODEL}:versions/07.yaml: field '(document)': not a version file: "
        "expected versions/<n>.yaml, n from 1"
    )
    assert found[1] == f"{MODEL}:versions/1.yaml: field 'version': 3 does not match the file name"
    assert found[2].startswith(f"{MODEL}:versions/2.yaml: field 'digest': the files under 'model'")
    assert len(found) == 3
    # A run commit from another run's history.
    edit(
        store,
        MODEL,
        {"versions/07.yaml": None, "versions/1.yaml": version_yaml(repo, 1, version=1)},
    )
    edit(store, MODEL, {"versions/2.yaml": version_yaml(repo, 2, run_commit=other_tip)})
    [problem] = validate_ref(store, MODEL)
    assert problem.field == "run_commit" and "is not in the history of run" in problem.reason


def test_stage_problems_and_the_cli_output(repo: Path, registry: Registry) -> None:
    stages = Stages(registry, Config())
    stages.assign("churn", 1, "staging")
    registry.delete_version("churn", 1)
    branch = "refs/heads/gitml/staging"
    edit(
        registry.store,
        branch,
        {
            "models/other.yaml": b"model: churn\nversions:\n- {version: 9, weight: 60}\n",
            "models/notes.txt": b"hello\n",
        },
    )
    result = cli("validate", "--ref", "gitml/staging", ok=False)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{branch}:models/churn.yaml: field 'versions.0.version': version 1 of 'churn' was deleted",
        f"{branch}:models/notes.txt: field '(document)': "
        "not a declaration: expected models/<name>.yaml",
        f"{branch}:models/other.yaml: field 'model': 'churn' does not match the file name "
        "other.yaml",
        f"{branch}:models/other.yaml: field 'versions': weights sum to 60, not 100",
        f"{branch}:models/other.yaml: field 'versions.0.version': model 'churn' has no version 9",
    ]


def test_a_proposal_is_checked_against_its_stage(repo: Path, registry: Registry) -> None:
    (repo / ".gitml.yaml").write_text(yaml.safe_dump({"policy": {"ordered": True}}))
    stages = Stages(registry, Config(policy=Policy(ordered=True)))
    done = stages.assign("churn", 2, "production", propose=True)
    expected = (
        "models/churn.yaml: field 'versions.0.version': policy ordered (stage 'staging' "
        "comes before 'production'): version 2 of 'churn' was never declared on stage "
        "'staging'; promote it there first"
    )
    branch = "gitml/proposals/production/churn-v2"
    result = cli("validate", "--ref", branch, ok=False)
    assert result.stderr.strip() == f"refs/heads/{branch}:{expected}"
    # CI has the pull request's head commit: its trailers say which stage it is for.
    result = cli("validate", "--ref", done.commit[:10], ok=False)
    assert result.stderr.strip() == f"{done.commit[:10]}:{expected}"
    stages.assign("churn", 2, "staging")
    assert cli("validate", "--ref", branch).output == ""
    line = one_error_line(cli("validate", "--ref", "gitml/nothing", ok=False))
    assert "no ref or commit 'gitml/nothing'" in line


def test_a_stage_file_in_a_work_tree(
    repo: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the pre-commit hook sees on a checked-out stage branch."""
    (repo / ".gitml.yaml").write_text(
        yaml.safe_dump({"policy": {"stages": {"staging": {"tags": ["reviewed"]}}}})
    )
    git(repo, "add", ".gitml.yaml")
    git(repo, "commit", "-q", "-m", "policy")
    registry.update_version("churn", 1, set_tags={"reviewed": "yes"})
    Stages(registry, Config()).assign("churn", 1, "staging")
    git(repo, "checkout", "-q", "gitml/staging")
    path = Path("models/churn.yaml")
    assert validate_files([path]) == []
    path.write_text("model: churn\nversions:\n- {version: 1, weight: 50}\n- {version: 2}\n")
    found = [str(p) for p in validate_files([path])]
    assert found == [
        "models/churn.yaml: field 'versions': weights sum to 150, not 100",
    ]
    path.write_text("model: churn\nversions:\n- {version: 2}\n")
    [problem] = validate_files([path])
    assert (problem.field, problem.reason) == (
        "versions.0.version",
        "policy stages.staging.tags: version 2 of 'churn' lacks the tag(s) reviewed",
    )
    version = Path("versions/2.yaml")
    version.parent.mkdir()
    version.write_bytes(version_yaml(repo, 1))
    [problem] = validate_files([version])
    assert str(problem) == "versions/2.yaml: field 'version': 1 does not match the file name 2.yaml"
    outside = repo.parent / "elsewhere" / "models" / "churn.yaml"
    outside.parent.mkdir(parents=True)
    outside.write_bytes(path.read_bytes())
    monkeypatch.chdir(outside.parent)  # outside a repository only the schema applies
    assert validate_files([outside]) == []


def test_a_manifest_path_that_escapes_the_run_is_a_problem(repo: Path) -> None:
    run_id = external_model_run(gitml.Client())
    ref = f"refs/gitml/runs/{run_id}"
    assert cli("validate", "--ref", ref).output == ""
    add_manifest_entry(repo, run_id, "model/../../x")
    result = cli("validate", "--ref", ref, ok=False)
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{ref}:artifacts.yaml: field 'artifacts.1.path': 'model/../../x' ")
