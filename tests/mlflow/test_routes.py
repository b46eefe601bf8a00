"""MLflow's REST API on ``gitml server``: MLflow's own client against a real server,
compared with MLflow's answers; tokens and unsupported routes in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from gitml.server.tracking_app import ServerSettings, create_app
from testing.mlflow_server import mlflow_env, needs_mlflow
from testing.mlflow_workload import run_workload
from testing.tracking_server import tracking_server

# The workload's alias "champion" is a stage the project lists.
STAGES = "stages: [staging, production, archived, champion]\n"


@needs_mlflow
@pytest.mark.slow
# MLflow's workload (imports, autolog's scan of scikit-learn) runs twice: ~1 min each when
# the machine is idle.
@pytest.mark.timeout(900)
def test_mlflow_client_workload_answers_as_mlflow_does(
    repo: Path, tmp_path: Path, mlflow_reference: dict[str, Any]
) -> None:
    (repo / ".gitml.yaml").write_text(STAGES)
    with tracking_server(repo) as server:
        env = mlflow_env(tmp_path / "home", MLFLOW_TRACKING_URI=server.url)
        answers = run_workload(tmp_path, env)
    answers.pop("seconds")
    assert answers == mlflow_reference


@pytest.fixture
def guarded(repo: Path, tmp_path: Path) -> Iterator[TestClient]:
    tokens = {"w-token": "write", "r-token": "read"}
    app = create_app(ServerSettings(repo=repo, tokens=tokens))  # type: ignore[arg-type]
    with TestClient(app) as client:
        yield client


def test_tokens_answer_mlflows_401_and_403(guarded: TestClient) -> None:
    create = "/api/2.0/mlflow/experiments/create"
    missing = guarded.post(create, json={"name": "x"})
    assert missing.status_code == 401
    assert missing.json()["error_code"] == "UNAUTHENTICATED"
    wrong = guarded.post(create, json={"name": "x"}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    read = {"Authorization": "Bearer r-token"}
    refused = guarded.post(create, json={"name": "x"}, headers=read)
    assert refused.status_code == 403
    assert refused.json()["error_code"] == "PERMISSION_DENIED"
    assert "may only read" in refused.json()["message"]
    upload = guarded.put(
        "/api/2.0/mlflow-artifacts/artifacts/0/abc/artifacts/a.txt", content=b"x", headers=read
    )
    assert upload.status_code == 403
    write = {"Authorization": "Bearer w-token"}
    made = guarded.post(create, json={"name": "x"}, headers=write)
    assert made.status_code == 200, made.text
    got = guarded.get(
        "/api/2.0/mlflow/experiments/get",
        params={"experiment_id": made.json()["experiment_id"]},
        headers=read,
    )
    assert got.status_code == 200 and got.json()["experiment"]["name"] == "x"


@pytest.mark.parametrize(
    ("method", "path", "code", "status"),
    [
        ("GET", "/api/2.0/mlflow/traces/tr-1/info", "NOT_IMPLEMENTED", 501),
        ("POST", "/api/3.0/mlflow/traces", "NOT_IMPLEMENTED", 501),
        ("GET", "/api/2.0/mlflow/gateway/endpoints/list", "NOT_IMPLEMENTED", 501),
        ("GET", "/ajax-api/2.0/mlflow/workspaces", "NOT_IMPLEMENTED", 501),
        ("POST", "/api/2.0/mlflow/prompts/create", "NOT_IMPLEMENTED", 501),
        ("POST", "/api/2.0/mlflow/registered-models/rename", "NOT_IMPLEMENTED", 501),
        ("POST", "/api/2.0/mlflow/no/such/route", "ENDPOINT_NOT_FOUND", 404),
        ("DELETE", "/api/2.0/mlflow-artifacts/artifacts/0/r/artifacts/a", "NOT_IMPLEMENTED", 501),
    ],
)
def test_routes_without_meaning_here_answer_in_mlflows_shape(
    repo: Path, method: str, path: str, code: str, status: int
) -> None:
    with TestClient(create_app(ServerSettings(repo=repo))) as client:
        answer = client.request(method, path, json={})
    assert answer.status_code == status
    assert answer.json()["error_code"] == code
    assert path.split("/")[-1] in answer.json()["message"] or code == "NOT_IMPLEMENTED"


def test_bad_input_is_mlflows_400_and_changes_nothing(repo: Path) -> None:
    with TestClient(create_app(ServerSettings(repo=repo))) as client:
        exp = client.post("/api/2.0/mlflow/experiments/create", json={"name": "e"}).json()
        run = client.post(
            "/api/2.0/mlflow/runs/create", json={"experiment_id": exp["experiment_id"]}
        ).json()["run"]
        run_id = run["info"]["run_id"]
        before = client.get("/api/2.0/mlflow/runs/get", params={"run_id": run_id}).json()
        bad = client.post(
            "/api/2.0/mlflow/runs/log-batch",
            json={"run_id": run_id, "metrics": [{"key": "m", "value": "high", "timestamp": 1}]},
        )
        assert bad.status_code == 400
        assert bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "'m'" in bad.json()["message"]
        not_json = client.post(
            "/api/2.0/mlflow/runs/log-batch",
            content=b"{",
            headers={"Content-Type": "application/json"},
        )
        assert not_json.status_code == 400
        assert client.get("/api/2.0/mlflow/runs/get", params={"run_id": run_id}).json() == before


def test_server_info_tells_mlflows_client_what_this_server_lacks(repo: Path) -> None:
    with TestClient(create_app(ServerSettings(repo=repo))) as client:
        answer = client.get("/api/3.0/mlflow/server-info")
    assert answer.status_code == 200
    assert answer.json()["workspaces_enabled"] is False
    assert answer.json()["multipart_uploads_enabled"] is False
