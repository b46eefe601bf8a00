"""The UI's JSON (``/api/v1/ui``) in-process, its static files, and ``gitml ui``."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, settings
from starlette.responses import FileResponse
from starlette.testclient import TestClient
from ui_seed import seed

from gitml.cli import main
from gitml.server.tracking_app import ServerSettings, create_app
from gitml.server.ui import static_file
from testing.git import git
from testing.procs import spawn
from testing.serving import free_socket

UI = "/api/v1/ui"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    repo = tmp_path_factory.mktemp("ui-api") / "work"
    data = seed(repo)
    data["repo"] = repo
    return data


@pytest.fixture(scope="module")
def http(seeded: dict[str, Any]) -> Iterator[TestClient]:
    with TestClient(create_app(ServerSettings(repo=seeded["repo"]))) as client:
        yield client


def table(http: TestClient, **body: Any) -> dict[str, Any]:
    answer = http.post(f"{UI}/runs-table", json=body)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def test_experiments_carry_run_counts_and_last_activity(
    http: TestClient, seeded: dict[str, Any]
) -> None:
    experiments = {e["name"]: e for e in http.get(f"{UI}/experiments").json()}
    assert experiments["churn"]["active_runs"] == 8
    assert experiments["vision"]["active_runs"] == 0
    assert experiments["churn"]["last_activity"] >= experiments["churn"]["creation_time"]


def test_runs_table_windows_columns_and_keys(http: TestClient, seeded: dict[str, Any]) -> None:
    exp = [seeded["experiment"]]
    first = table(http, experiment_ids=exp, with_keys=True, limit=3)
    assert first["total"] == 8 and len(first["rows"]) == 3
    assert first["keys"]["metrics"] == ["accuracy", "loss"]
    assert first["keys"]["tags"] == ["team"]
    # Default columns: the first metrics, then the first params.
    assert first["fields"][8] == "lifecycle_stage"
    assert first["fields"][9:] == [
        "metrics.accuracy",
        "metrics.loss",
        "params.depth",
        "params.grid",
        "params.lr",
        "params.optimizer",
    ]
    rest = table(http, experiment_ids=exp, limit=5, offset=3, columns=[])
    ids = [row[0] for row in first["rows"] + rest["rows"]]
    assert len(set(ids)) == 8
    chosen = table(
        http,
        experiment_ids=exp,
        filter="params.optimizer = 'adam'",
        order_by=["metrics.loss DESC"],
        columns=["metrics.loss", "tags.team"],
    )
    assert chosen["total"] == 2
    assert [row[1] for row in chosen["rows"]] == ["train-0", "train-2"]
    assert [row[9:] for row in chosen["rows"]] == [[0.05, "risk"], [1 / 22, "risk"]]


def test_deleted_runs_are_listed_on_request_and_shown(
    http: TestClient, seeded: dict[str, Any]
) -> None:
    exp = [seeded["experiment"]]
    deleted = table(http, experiment_ids=exp, run_view_type="DELETED_ONLY", columns=[])
    assert deleted["total"] == 1
    assert [row[:3] for row in deleted["rows"]] == [[seeded["deleted"], "discarded", "KILLED"]]
    assert deleted["rows"][0][8] == "deleted"
    every = table(http, experiment_ids=exp, run_view_type="ALL", columns=[], limit=100)
    stages = {row[1]: row[8] for row in every["rows"]}
    assert len(stages) == 9 and stages["discarded"] == "deleted" and stages["sweep"] == "active"
    page = http.get(f"{UI}/runs/{seeded['deleted']}").json()
    assert page["run"]["lifecycle_stage"] == "deleted"


def test_runs_table_filter_errors_say_where(http: TestClient, seeded: dict[str, Any]) -> None:
    answer = http.post(f"{UI}/runs-table", json={"filter": "metrics.loss >< 2"})
    assert answer.status_code == 400
    error = answer.json()
    assert error["position"] == 14 and error["message"].endswith("^")
    bad = http.post(f"{UI}/runs-table", json={"columns": ["loss"]})
    assert bad.status_code == 400 and "params.<key>" in bad.json()["message"]


def test_run_page_and_histories(http: TestClient, seeded: dict[str, Any]) -> None:
    dirty = http.get(f"{UI}/runs/{seeded['dirty']}").json()
    assert dirty["code"]["dirty"] is True and dirty["code"]["commit"] == seeded["code_commit"]
    assert dirty["code"]["message"] == "initial\n"
    assert len(dirty["artifacts"]) == 5
    parent = http.get(f"{UI}/runs/{seeded['parent']}").json()
    assert sorted(c["id"] for c in parent["children"]) == sorted(seeded["children"])
    child = http.get(f"{UI}/runs/{seeded['children'][0]}").json()
    assert child["parent"] == {"id": seeded["parent"], "name": "sweep", "present": True}
    model_run = http.get(f"{UI}/runs/{seeded['model_run']}").json()
    assert [m["version"] for m in model_run["models"]] == [1, 2, 3]
    series = http.post(
        f"{UI}/metric-histories", json={"run_ids": seeded["runs"][:2], "keys": ["loss", "nope"]}
    ).json()["series"]
    assert [(s["key"], len(s["steps"])) for s in series] == [("loss", 20), ("loss", 20)]


def test_models_stages_and_commits(http: TestClient, seeded: dict[str, Any]) -> None:
    (model,) = http.get(f"{UI}/models").json()
    page = http.get(f"{UI}/models/churn-model").json()
    digest = {v["version"]: v["digest"] for v in page["versions"]}
    assert model["stages"] == {
        "staging": [{"version": 2, "weight": 100, "digest": digest[2]}],
        "production": [{"version": 3, "weight": 100, "digest": digest[3]}],
    }
    local = {"staging": "refs/heads/gitml/staging", "production": "refs/heads/gitml/production"}
    assert model["stage_refs"] == page["stage_refs"] == local
    assert [e["stage"] for e in page["timeline"]] == ["production"] * 3 + ["staging"]
    assert page["timeline"][2]["merge"]["branch"] == "gitml/proposals/production/churn-model-v3"
    version = http.get(f"{UI}/models/churn-model/versions/3").json()
    assert version["run"]["id"] == seeded["model_run"]
    commit = http.get(f"{UI}/commits/{seeded['code_commit']}").json()
    assert commit["subject"] == "initial" and len(commit["runs"]) >= 8
    assert http.get(f"{UI}/commits/{'0' * 40}").status_code == 404
    lineage = http.get(f"{UI}/lineage", params={"target": "models:/churn-model/1"}).json()
    assert lineage["kind"] == "model_version"


def test_a_stage_fetched_from_a_remote_only_is_shown_with_the_ref_it_was_read_from(
    http: TestClient, seeded: dict[str, Any]
) -> None:
    repo = seeded["repo"]
    tracking = "refs/remotes/origin/gitml/qa"  # as `git fetch` leaves another's stage branch
    git(repo, "update-ref", tracking, "refs/heads/gitml/production")
    try:
        (model,) = http.get(f"{UI}/models").json()
        page = http.get(f"{UI}/models/churn-model").json()
    finally:
        git(repo, "update-ref", "-d", tracking)
    assert model["stages"]["qa"] == model["stages"]["production"]
    assert model["stage_refs"]["qa"] == page["stage_refs"]["qa"] == tracking
    assert page["stages"]["qa"] == page["stages"]["production"]


def test_pages_are_served_at_stable_urls(http: TestClient) -> None:
    root = http.get("/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/ui/"
    index = http.get("/ui/")
    assert index.headers["content-type"].startswith("text/html")
    assert http.get("/ui/runs/0123abc").text == index.text  # a page URL, not a file
    script = http.get("/ui/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    # Nothing outside the UI's folder is served, however the path is spelled.
    for sneaky in ("../../../pyproject.toml", "/etc/passwd", "..%2f..%2fpyproject.toml"):
        answer = static_file(sneaky)
        assert isinstance(answer, FileResponse) and Path(answer.path).name == "index.html"


def test_tokens_guard_the_data_not_the_pages(seeded: dict[str, Any], tmp_path: Path) -> None:
    settings = ServerSettings(repo=seeded["repo"], tokens={"reader": "read"})
    with TestClient(create_app(settings)) as http:
        assert http.get("/ui/").status_code == 200
        assert http.get(f"{UI}/experiments").status_code == 401
        ok = http.get(f"{UI}/experiments", headers={"Authorization": "Bearer reader"})
        assert ok.status_code == 200


def test_gitml_ui_binds_loopback_only(seeded: dict[str, Any]) -> None:
    refused = CliRunner().invoke(main, ["ui", "--repo", str(seeded["repo"]), "--host", "0.0.0.0"])
    assert refused.exit_code == 1
    assert "reachable from other machines" in refused.output


@pytest.mark.slow
def test_gitml_ui_serves_the_pages_over_a_local_repository(seeded: dict[str, Any]) -> None:
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    script = "import sys; from gitml.cli import main; sys.argv[0] = 'gitml'; main()"
    proc = spawn(script, seeded["repo"], "ui", "--port", str(port))
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx2.get(f"http://127.0.0.1:{port}{UI}/experiments", timeout=2)
                break
            except httpx2.TransportError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "gitml ui did not answer"
                time.sleep(0.1)
        assert answer.status_code == 200
        assert "churn" in {e["name"] for e in answer.json()}
        assert "<title>gitml</title>" in httpx2.get(f"http://127.0.0.1:{port}/ui/").text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


@pytest.fixture
def ui_schema(seeded: dict[str, Any]) -> Any:
    import schemathesis

    app = create_app(ServerSettings(repo=seeded["repo"]))
    return schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)


schemathesis = pytest.importorskip("schemathesis")
ui_operations = schemathesis.pytest.from_fixture("ui_schema").include(path_regex="/ui/")


@ui_operations.parametrize()
@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)
def test_ui_operations_never_fail_on_odd_input(case: Any) -> None:
    """Generated requests for every UI route: never a 5xx, and bad bodies are refused."""
    from schemathesis import checks

    case.call_and_validate(checks=[checks.not_a_server_error, checks.negative_data_rejection])


def test_run_page_reads_the_log_model_history_for_people(
    http: TestClient, seeded: dict[str, Any]
) -> None:
    page = http.get(f"{UI}/runs/{seeded['model_run']}").json()
    (logged,) = page["logged_models"]
    assert logged["artifact_path"] == "model"
    assert logged["flavors"] == ["python_function", "sklearn"]
    assert logged["time"].endswith(" UTC") and len(logged["time"]) == len("2025-01-01 00:00:00 UTC")
    assert "mlflow.log-model.history" in page["run"]["tags"]  # the tag itself is unchanged
    assert http.get(f"{UI}/runs/{seeded['dirty']}").json()["logged_models"] is None
