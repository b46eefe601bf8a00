"""The MLflow API's translation in process: aliases and MLflow 2 stages as stage branches,
under the project's policy, and what a refusal looks like to MLflow's client."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import gitml
from gitml.mlflow.api import MlflowApi, MlflowApiError
from testing.git import git
from testing.mlflow_server import ROOT, needs_mlflow
from testing.registry import log_iris_run

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PLUGIN_GROUPS = (
    "mlflow.tracking_store",
    "mlflow.model_registry_store",
    "mlflow.artifact_repository",
)

POLICY = """\
stages: [staging, production, archived, champion]
policy:
  stages:
    champion:
      tags: [validated]
"""


@pytest.fixture
def api(repo: Path) -> MlflowApi:
    (repo / ".gitml.yaml").write_text(POLICY)
    client = gitml.Client(str(repo))
    api = MlflowApi.over(client)
    for _ in range(2):
        run_id, _clf, _x = log_iris_run(client)
        api.handle(
            "POST",
            "model-versions/create",
            {"name": "iris", "source": f"runs:/{run_id}/model", "run_id": run_id},
        )
    return api


def refusal(api: MlflowApi, method: str, path: str, body: dict[str, object]) -> MlflowApiError:
    with pytest.raises(MlflowApiError) as caught:
        api.handle(method, path, body)
    return caught.value


def test_an_alias_the_policy_refuses_is_permission_denied_and_commits_nothing(
    api: MlflowApi, repo: Path
) -> None:
    body = {"name": "iris", "alias": "champion", "version": "1"}
    refused = refusal(api, "POST", "registered-models/alias", body)
    assert (refused.error_code, refused.http_status) == ("PERMISSION_DENIED", 403)
    assert "lacks the tag(s)" in refused.message and "validated" in refused.message
    assert git(repo, "branch", "--list", "gitml/champion").strip() == ""

    api.handle(
        "POST",
        "model-versions/set-tag",
        {"name": "iris", "version": "1", "key": "validated", "value": "yes"},
    )
    api.handle("POST", "registered-models/alias", body)
    found = api.handle("GET", "registered-models/alias", {"name": "iris", "alias": "champion"})
    assert found["model_version"]["version"] == "1"
    assert found["model_version"]["aliases"] == ["champion"]
    log = git(repo, "log", "--format=%s", "gitml/champion").splitlines()
    assert log[0] == "gitml: champion: iris v1"


def test_an_alias_that_is_no_stage_of_the_project_is_refused_naming_the_file(
    api: MlflowApi,
) -> None:
    body = {"name": "iris", "alias": "blue", "version": "1"}
    refused = refusal(api, "POST", "registered-models/alias", body)
    assert refused.error_code == "INVALID_PARAMETER_VALUE"
    assert ".gitml.yaml" in refused.message


def test_transition_stage_is_an_assignment_and_archives_the_replaced_version(
    api: MlflowApi, repo: Path
) -> None:
    def transition(version: str, stage: str, archive: bool = False) -> str:
        answer = api.handle(
            "POST",
            "model-versions/transition-stage",
            {
                "name": "iris",
                "version": version,
                "stage": stage,
                "archive_existing_versions": archive,
            },
        )
        current: str = answer["model_version"]["current_stage"]
        return current

    assert transition("1", "Production") == "Production"
    assert transition("2", "Production", archive=True) == "Production"
    first = api.handle("GET", "model-versions/get", {"name": "iris", "version": "1"})
    assert first["model_version"]["current_stage"] == "Archived"
    latest = api.handle(
        "POST", "registered-models/get-latest-versions", {"name": "iris", "stages": ["Production"]}
    )
    assert [v["version"] for v in latest["model_versions"]] == ["2"]
    assert transition("2", "None") == "None"
    assert git(repo, "log", "-1", "--format=%s", "gitml/production").strip() == (
        "gitml: production: remove iris"
    )
    bad = refusal(
        api,
        "POST",
        "model-versions/transition-stage",
        {"name": "iris", "version": "1", "stage": "Prod"},
    )
    assert bad.error_code == "INVALID_PARAMETER_VALUE" and "Prod" in bad.message


def test_a_deleted_model_is_a_tombstone_refused_while_a_stage_branch_declares_it(
    api: MlflowApi, repo: Path
) -> None:
    name = {"name": "iris"}
    api.handle(
        "POST",
        "model-versions/transition-stage",
        {"name": "iris", "version": "1", "stage": "Production"},
    )
    api.stages.assign("iris", 2, "staging", propose=True)
    refused = refusal(api, "DELETE", "registered-models/delete", name)
    assert refused.error_code == "INVALID_PARAMETER_VALUE"
    assert "refs/heads/gitml/production" in refused.message
    assert "refs/heads/gitml/proposals/staging/iris-v2" in refused.message
    git(repo, "branch", "-D", "gitml/proposals/staging/iris-v2")
    api.handle(
        "POST", "model-versions/transition-stage", {"name": "iris", "version": "1", "stage": "None"}
    )
    before = git(repo, "rev-parse", "refs/gitml/models/iris").strip()

    assert api.handle("DELETE", "registered-models/delete", name) == {}
    assert refusal(api, "GET", "registered-models/get", name).error_code == (
        "RESOURCE_DOES_NOT_EXIST"
    )
    assert api.handle("GET", "registered-models/search", {}) == {"registered_models": []}
    gone = refusal(api, "GET", "model-versions/get", {"name": "iris", "version": "2"})
    assert gone.error_code == "RESOURCE_DOES_NOT_EXIST"
    # Nothing is rewritten: the deletion is one more commit, every version is still in it.
    subprocess.run(
        ["git", "merge-base", "--is-ancestor", before, "refs/gitml/models/iris"],
        cwd=repo,
        check=True,
    )
    assert git(repo, "log", "-1", "--format=%s", "refs/gitml/models/iris").strip() == (
        "gitml: delete model iris"
    )
    assert "status: DELETED" in git(repo, "show", "refs/gitml/models/iris:versions/2.yaml")

    # Registered again, the model lives on; its numbers are never given out twice.
    run_id, _clf, _x = log_iris_run(api.client)
    made = api.handle(
        "POST", "model-versions/create", {"name": "iris", "source": f"runs:/{run_id}/model"}
    )
    assert made["model_version"]["version"] == "3"
    assert [
        v["version"] for v in api.handle("GET", "model-versions/search", {})["model_versions"]
    ] == ["3"]


def test_renaming_a_registered_model_says_why_not_and_what_to_do(api: MlflowApi) -> None:
    refused = refusal(
        api, "POST", "registered-models/rename", {"name": "iris", "new_name": "flowers"}
    )
    assert (refused.error_code, refused.http_status) == ("NOT_IMPLEMENTED", 501)
    assert "refs/gitml/models/<name>" in refused.message and "models:/" in refused.message


def test_only_the_plugin_imports_mlflow(repo: Path) -> None:
    script = (
        "import sys, gitml.mlflow.api, gitml.server.mlflow_routes, gitml.server.tracking_app; "
        "print(sorted(m for m in sys.modules if m == 'mlflow' or m.startswith('mlflow.')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


@needs_mlflow
def test_the_entry_points_name_the_plugin_classes() -> None:
    with (ROOT / "pyproject.toml").open("rb") as f:
        groups = tomllib.load(f)["project"]["entry-points"]
    named = {group: groups[group]["gitml"] for group in PLUGIN_GROUPS}
    script = (
        "import importlib, json, sys; "
        "print(json.dumps([getattr(importlib.import_module(m), c).__mro__[1].__name__ "
        "for m, c in (v.split(':') for v in json.loads(sys.argv[1]))]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(list(named.values()))],
        capture_output=True,
        text=True,
        check=True,
    )
    # Each is a subclass of the MLflow class its group asks for.
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [
        "RestStore",
        "RestStore",
        "ArtifactRepository",
    ]
