"""The tracking server's REST API in-process (Starlette's TestClient): every route,
authentication, body limits, validation, artifact paths, batch ids, OpenAPI."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fastapi.routing import APIRoute
from starlette.testclient import TestClient

import gitml
from gitml.server.tracking_app import PREFIX, ServerSettings, create_app, read_tokens
from testing.git import git
from testing.registry import log_iris_run

API = PREFIX


@pytest.fixture
def http(repo: Path) -> Iterator[TestClient]:
    with TestClient(create_app(ServerSettings(repo=repo, max_body_bytes=200_000))) as client:
        yield client


def new_run(http: TestClient, **body: Any) -> dict[str, Any]:
    answer = http.post(f"{API}/runs", json=body)
    assert answer.status_code == 201, answer.text
    run: dict[str, Any] = answer.json()
    return run


def batch(http: TestClient, run_id: str, **body: Any) -> dict[str, Any]:
    answer = http.post(f"{API}/runs/{run_id}/log-batch", json=body)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


# -- experiments and runs --------------------------------------------------------------


def test_experiments_are_created_listed_and_found_by_id_or_name(http: TestClient) -> None:
    created = http.post(f"{API}/experiments", json={"name": "churn", "tags": {"team": "a"}})
    assert created.status_code == 201
    exp = created.json()
    assert exp["name"] == "churn" and exp["tags"] == {"team": "a"}
    assert http.get(f"{API}/experiments/{exp['id']}").json() == exp
    assert http.get(f"{API}/experiments/churn").json() == exp
    assert [e["name"] for e in http.get(f"{API}/experiments").json()] == ["churn"]
    again = http.post(f"{API}/experiments", json={"name": "churn"})
    assert again.status_code == 409 and "already exists" in again.json()["message"]
    missing = http.get(f"{API}/experiments/nope")
    assert missing.status_code == 404
    assert missing.json() == {
        "error_code": "RESOURCE_DOES_NOT_EXIST",
        "message": "no experiment with id or name 'nope'",
    }
    # A GET never creates: the experiment is still missing.
    assert http.get(f"{API}/experiments/nope").status_code == 404
    assert http.get(f"{API}/default-experiment").json()["name"] == "Default"


def test_run_lifecycle_through_the_api(http: TestClient, repo: Path) -> None:
    run = new_run(http, run_name="first", tags={"a": "1"}, entry_point="train.py")
    run_id = run["id"]
    assert run["status"] == "RUNNING" and run["tags"] == {"a": "1"}
    assert run["source"]["commit"] is None  # the server's own checkout is not the run's code
    assert http.get(f"{API}/runs/{run_id[:10]}").json()["id"] == run_id  # a prefix works

    renamed = http.patch(f"{API}/runs/{run_id}", json={"run_name": "second"})
    assert renamed.json()["name"] == "second"
    ended = http.patch(f"{API}/runs/{run_id}", json={"status": "FINISHED", "end_time": 5})
    assert ended.json()["status"] == "FINISHED" and ended.json()["end_time"] == 5

    assert http.delete(f"{API}/runs/{run_id}/tags/a").json()["tags"] == {}
    assert http.delete(f"{API}/runs/{run_id}/tags/a").status_code == 404
    assert http.delete(f"{API}/runs/{run_id}").status_code == 204
    assert http.get(f"{API}/runs/{run_id}").json()["lifecycle_stage"] == "deleted"
    counts = http.get(f"{API}/run-counts").json()
    assert counts == {run["experiment_id"]: {"active": 0, "deleted": 1}}
    restored = http.post(f"{API}/runs/{run_id}/restore").json()
    assert restored["lifecycle_stage"] == "active"
    assert http.get(f"{API}/broken-records").json() == []
    assert http.get(f"{API}/runs/{'0' * 32}").status_code == 404
    # The server's commits are ordinary run commits anyone can fetch.
    assert f"refs/gitml/runs/{run_id}" in git(repo, "for-each-ref", "refs/gitml/runs/")


def test_log_batch_commits_before_answering_and_history_reads_it(
    http: TestClient, repo: Path
) -> None:
    run_id = new_run(http)["id"]
    points = [{"key": "loss", "value": 1.0 / (i + 1), "step": i, "timestamp": 10} for i in range(5)]
    assert batch(http, run_id, metrics=points, params={"lr": "0.1"}, tags={"t": "x"}) == {
        "applied": True,
        "reason": None,
    }
    # Committed already: a plain local client sees it.
    run = gitml.Client(str(repo)).get_run(run_id)
    assert run.params == {"lr": "0.1"} and run.tags == {"t": "x"}
    history = http.get(f"{API}/runs/{run_id}/metrics/loss").json()
    assert [p["step"] for p in history["points"]] == [0, 1, 2, 3, 4]
    assert history["points"][1] == {"value": 0.5, "step": 1, "timestamp": 10}
    changed = http.post(f"{API}/runs/{run_id}/log-batch", json={"params": {"lr": "0.2"}})
    assert changed.status_code == 409 and "cannot change" in changed.json()["message"]
    assert http.get(f"{API}/runs/{run_id}/metrics/nope").status_code == 404
    assert http.post(f"{API}/runs/{'f' * 32}/log-batch", json={}).status_code == 404


def test_a_batch_id_is_applied_once_even_after_a_restart(http: TestClient, repo: Path) -> None:
    run_id = new_run(http)["id"]
    body = {"metrics": [{"key": "m", "value": 1.0, "step": 1}], "batch_id": "seg-1:0-1"}
    assert batch(http, run_id, **body)["applied"] is True
    again = batch(http, run_id, **body)
    assert again == {"applied": False, "reason": "batch_id was applied before"}
    # A new server process over the same repository learns the id from the run's history.
    with TestClient(create_app(ServerSettings(repo=repo))) as restarted:
        assert batch(restarted, run_id, **body)["applied"] is False
        other = {**body, "batch_id": "seg-1:1-2"}
        assert batch(restarted, run_id, **other)["applied"] is True
    history = http.get(f"{API}/runs/{run_id}/metrics/m").json()["points"]
    assert len(history) == 2
    message = git(repo, "log", "-1", "--format=%B", f"refs/gitml/runs/{run_id}")
    assert "Gitml-Journal: seg-1:1-2" in message


def test_search_uses_the_query_grammar(http: TestClient) -> None:
    for lr in ("0.1", "0.5"):
        run_id = new_run(http)["id"]
        batch(http, run_id, params={"lr": lr}, metrics=[{"key": "acc", "value": float(lr)}])
    found = http.post(f"{API}/runs/search", json={"filter": "params.lr = '0.5' OR metrics.acc < 0"})
    assert found.status_code == 200
    assert [r["params"]["lr"] for r in found.json()["runs"]] == ["0.5"]
    ordered = http.post(
        f"{API}/runs/search", json={"order_by": ["metrics.acc DESC"], "max_results": 1}
    ).json()
    assert [r["params"]["lr"] for r in ordered["runs"]] == ["0.5"]
    assert ordered["next_page_token"] is not None
    bad = http.post(f"{API}/runs/search", json={"filter": "params.lr =="})
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert bad.json()["message"]


def test_concurrent_queries_on_a_real_uvicorn(repo: Path) -> None:
    """The index is one SQLite connection: queries from many requests at once all answer."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx2

    from testing.serving import uvicorn_server

    app = create_app(ServerSettings(repo=repo))
    with uvicorn_server(app) as url, httpx2.Client(base_url=url + API) as http:
        run_id = http.post("/runs", json={}).json()["id"]

        def query(n: int) -> int:
            if n % 3 == 0:
                return http.get("/run-counts").status_code
            if n % 3 == 1:
                return http.get("/broken-records").status_code
            answer = http.post("/runs/search", json={"filter": f"attributes.run_id = '{run_id}'"})
            assert [r["id"] for r in answer.json()["runs"]] == [run_id]
            return answer.status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(query, range(48))) == {200}


# -- validation and limits ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({}, "body.name: Field required"),
        ({"name": ""}, "body.name"),
        ({"name": "x", "colour": "red"}, "body.colour: Extra inputs are not permitted"),
        ({"name": "x", "tags": {"a": 1}}, "body.tags.a"),
    ],
)
def test_a_malformed_body_is_a_400_naming_the_field(
    http: TestClient, body: dict[str, Any], named: str
) -> None:
    answer = http.post(f"{API}/experiments", json=body)
    assert answer.status_code == 400
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert answer.json()["message"].startswith(named)


def test_bad_metric_values_and_json_are_400(http: TestClient) -> None:
    run_id = new_run(http)["id"]
    for metrics, named in [
        ([{"key": "m", "value": "high"}], "body.metrics.0.value"),
        ([{"key": "m", "value": 1, "step": -1}], "body.metrics.0.step"),
        ([{"key": "bad\tkey", "value": 1}], "metric key"),
        ([{"key": "m", "value": 1}] * 1001, "body.metrics"),
    ]:
        answer = http.post(f"{API}/runs/{run_id}/log-batch", json={"metrics": metrics})
        assert answer.status_code == 400, metrics
        assert named in answer.json()["message"]
    broken = http.post(
        f"{API}/runs/{run_id}/log-batch",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert broken.status_code == 400
    unknown = http.get(f"{API}/nothing-here")
    assert unknown.status_code == 404 and unknown.json()["error_code"] == "ENDPOINT_NOT_FOUND"


@pytest.mark.parametrize(
    ("route", "body", "named"),
    [
        ("log-batch", b'{"tags": {"file": "model-\\udcff.pkl"}}', "tag 'file' value holds"),
        ("log-batch", b'{"params": {"file": "\\ud800"}}', "param 'file' value holds"),
        ("log-batch", b'{"metrics": [{"key": "m", "value": 1, "step": 2e19}]}', "step"),
        ("log-batch", b'{"metrics": [{"key": "m", "value": 1, "step": %d}]}' % 2**63, "step"),
        ("log-batch", b'{"metrics": [{"key": "m", "value": 1, "timestamp": %d}]}' % 2**63, "time"),
        ("log-batch", b'{"metrics": [{"key": "m", "value": %d}]}' % 10**400, "value"),
        ("", b'{"run_name": "a\\udcff"}', "run name holds"),
        ("", b'{"end_time": %d}' % 2**63, "end_time"),
    ],
)
def test_values_that_would_break_every_query_are_400_and_search_still_answers(
    http: TestClient, route: str, body: bytes, named: str
) -> None:
    run_id = new_run(http, tags={"ok": "1"})["id"]
    batch(http, run_id, params={"a:b": "x"})  # a quoted key: run.yaml is read by PyYAML
    send = http.post if route else http.patch
    answer = send(
        f"{API}/runs/{run_id}/{route}".rstrip("/"),
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert named in answer.json()["message"]
    found = http.post(f"{API}/runs/search", json={"filter": "params.`a:b` = 'x'"})
    assert found.status_code == 200, found.text
    assert [r["id"] for r in found.json()["runs"]] == [run_id]


def test_bodies_over_the_limit_are_413_declared_or_streamed(http: TestClient) -> None:
    run_id = new_run(http)["id"]
    big = b'{"tags": {"a": "' + b"x" * 300_000 + b'"}}'
    declared = http.post(
        f"{API}/runs/{run_id}/log-batch",
        content=big,
        headers={"Content-Type": "application/json"},
    )
    assert declared.status_code == 413
    assert declared.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(big), 50_000):
            yield big[start : start + 50_000]

    streamed = http.post(
        f"{API}/runs/{run_id}/log-batch",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert streamed.status_code == 413
    assert "over the limit" in streamed.json()["message"]


# -- authentication ----------------------------------------------------------------------


@pytest.fixture
def secured(repo: Path, tmp_path: Path) -> Iterator[TestClient]:
    tokens = tmp_path / "tokens"
    tokens.write_text("# who may do what\nreader-token read\nwriter-token write\n")
    settings = ServerSettings(repo=repo, tokens=read_tokens(tokens))
    with TestClient(create_app(settings)) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_tokens_give_read_or_write_scope(secured: TestClient) -> None:
    none = secured.get(f"{API}/experiments")
    assert none.status_code == 401 and none.json()["error_code"] == "UNAUTHENTICATED"
    assert secured.get(f"{API}/experiments", headers=bearer("guess")).status_code == 401
    assert secured.get(f"{API}/experiments", headers=bearer("reader-token")).status_code == 200
    denied = secured.post(f"{API}/runs", json={}, headers=bearer("reader-token"))
    assert denied.status_code == 403 and denied.json()["error_code"] == "PERMISSION_DENIED"
    assert secured.post(f"{API}/runs", json={}, headers=bearer("writer-token")).status_code == 201
    assert secured.post(f"{API}/runs", json={}).status_code == 401
    assert secured.get(f"{API}/version").status_code == 200  # no secret in a version


def test_token_file_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "tokens"
    bad.write_text("abc read\nxyz admin\n")
    with pytest.raises(gitml.errors.InvalidInput, match="tokens:2: expected 'TOKEN read'"):
        read_tokens(bad)
    bad.write_text("# nothing\n")
    with pytest.raises(gitml.errors.InvalidInput, match="holds no token"):
        read_tokens(bad)


# -- artifacts ------------------------------------------------------------------------------


def test_artifacts_upload_list_and_download_the_same_bytes(http: TestClient) -> None:
    run_id = new_run(http)["id"]
    data = bytes(range(256)) * 4000  # ~1 MB, more than one streamed chunk
    put = http.put(f"{API}/runs/{run_id}/artifacts/data/blob.bin", content=data)
    assert put.status_code == 200, put.text
    assert put.json()["sha256"] == hashlib.sha256(data).hexdigest()
    http.put(f"{API}/runs/{run_id}/artifacts/notes.txt", content=b"hi")
    listed = http.get(f"{API}/runs/{run_id}/artifacts").json()
    assert [a["path"] for a in listed] == ["data/blob.bin", "notes.txt"]
    below = http.get(f"{API}/runs/{run_id}/artifacts", params={"path": "data"}).json()
    assert [a["path"] for a in below] == ["data/blob.bin"]
    got = http.get(f"{API}/runs/{run_id}/artifacts/data/blob.bin")
    assert got.content == data and got.headers["content-length"] == str(len(data))
    assert http.get(f"{API}/runs/{run_id}/artifacts/nope.txt").status_code == 404
    assert http.put(f"{API}/runs/{'a' * 32}/artifacts/x.txt", content=b"x").status_code == 404


@pytest.mark.parametrize(
    "path",
    ["%2e%2e/escape.txt", "data/%2E%2E/%2e%2e/escape.txt", "%2Fetc%2Fpasswd", ".git/config"],
)
def test_artifact_paths_cannot_escape(http: TestClient, path: str) -> None:
    run_id = new_run(http)["id"]
    put = http.put(f"{API}/runs/{run_id}/artifacts/{path}", content=b"x")
    assert put.status_code in (400, 404), put.text
    get = http.get(f"{API}/runs/{run_id}/artifacts/{path}")
    assert get.status_code in (400, 404)
    assert http.get(f"{API}/runs/{run_id}/artifacts").json() == []


def test_artifact_path_messages_say_why(http: TestClient) -> None:
    run_id = new_run(http)["id"]
    answer = http.put(f"{API}/runs/{run_id}/artifacts/a/%2e%2e/%2e%2e/x", content=b"x")
    assert answer.status_code == 400 and "escapes" in answer.json()["message"]


def test_artifacts_over_their_limit_are_413(repo: Path) -> None:
    settings = ServerSettings(repo=repo, max_artifact_bytes=1000)
    with TestClient(create_app(settings)) as http:
        run_id = new_run(http)["id"]
        over = http.put(f"{API}/runs/{run_id}/artifacts/big.bin", content=b"x" * 1001)
        assert over.status_code == 413

        def chunks() -> Iterator[bytes]:
            yield b"x" * 600
            yield b"x" * 600

        streamed = http.put(f"{API}/runs/{run_id}/artifacts/big.bin", content=chunks())
        assert streamed.status_code == 413
        assert http.get(f"{API}/runs/{run_id}/artifacts").json() == []
        assert http.put(f"{API}/runs/{run_id}/artifacts/ok.bin", content=b"x" * 1000).is_success


# -- models and stages ----------------------------------------------------------------------


def test_models_versions_and_stages(http: TestClient, repo: Path) -> None:
    run_id, _, _ = log_iris_run(gitml.Client(str(repo)))
    model = http.post(f"{API}/models", json={"name": "churn", "description": "d"})
    assert model.status_code == 201 and model.json()["name"] == "churn"
    assert [m["name"] for m in http.get(f"{API}/models").json()] == ["churn"]
    assert http.get(f"{API}/models/churn").json()["description"] == "d"
    version = http.post(
        f"{API}/models/churn/versions", json={"source": f"runs:/{run_id}/model", "tags": {"a": "b"}}
    )
    assert version.status_code == 201, version.text
    assert version.json()["version"] == 1 and version.json()["run_id"] == run_id
    assert http.get(f"{API}/models/churn/versions/1").json()["tags"] == {"a": "b"}
    updated = http.patch(
        f"{API}/models/churn/versions/1", json={"description": "new", "set_tags": {"c": "d"}}
    )
    assert updated.json()["description"] == "new" and updated.json()["tags"]["c"] == "d"
    assert len(http.get(f"{API}/models/churn/versions").json()) == 1
    assert http.get(f"{API}/models/nope").status_code == 404
    bad_source = http.post(f"{API}/models/churn/versions", json={"source": "s3://x"})
    assert bad_source.status_code == 400

    stages = http.get(f"{API}/stages").json()
    assert "staging" in stages
    assigned = http.post(f"{API}/stages/staging/assignments", json={"model": "churn", "version": 1})
    assert assigned.status_code == 201, assigned.text
    assert assigned.json()["declaration"]["versions"][0]["version"] == 1
    shown = http.get(f"{API}/stages/staging").json()
    assert shown["churn"]["versions"][0]["version"] == 1
    history = http.get(f"{API}/stages/staging/history").json()
    assert history[0]["model"] == "churn" and history[0]["after"] is not None
    assert http.get(f"{API}/stages/staging", params={"at": 0}).status_code in (200, 404)
    deleted = http.delete(f"{API}/models/churn/versions/1")
    assert deleted.status_code in (200, 409)


# -- the OpenAPI document ---------------------------------------------------------------------


def api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    """Every API route, also inside included routers (FastAPI keeps those as one entry)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None) or getattr(route, "router", None)
        if inner is not None and hasattr(inner, "routes"):
            yield from api_routes(inner.routes)


def test_openapi_document_covers_every_route_and_its_bodies(http: TestClient) -> None:
    doc = http.get(f"{API}/openapi.json").json()
    routes = [r for r in api_routes(http.app.routes) if r.include_in_schema]  # type: ignore[attr-defined]
    assert len(routes) >= 30
    for route in routes:
        documented = doc["paths"].get(route.path_format)
        assert documented is not None, route.path_format
        for method in route.methods:
            assert method.lower() in documented, (method, route.path_format)
    assert set(doc["paths"]) == {r.path_format for r in routes}

    def body_schema(path: str, method: str) -> dict[str, Any]:
        ref = doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
        return {**ref, "components": doc["components"]}

    samples = [
        (f"{API}/experiments", "post", {"name": "x", "tags": {"a": "b"}}),
        (f"{API}/runs", "post", {"run_name": "r", "tags": {}, "entry_point": "t.py"}),
        (
            f"{API}/runs/{{run_id}}/log-batch",
            "post",
            {
                "metrics": [{"key": "m", "value": 1.5, "step": 2, "timestamp": 3}],
                "params": {"p": "1"},
                "tags": {"t": "2"},
                "batch_id": "abc-1:0-3",
            },
        ),
        (f"{API}/runs/search", "post", {"filter": "metrics.m > 1", "max_results": 5}),
        (f"{API}/runs/{{run_id}}", "patch", {"status": "FINISHED", "end_time": 1}),
        (f"{API}/stages/{{stage}}/assignments", "post", {"model": "m", "version": 1}),
    ]
    for path, method, sample in samples:
        jsonschema.validate(sample, body_schema(path, method))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"metrics": [{"value": 1}]}, body_schema(samples[2][0], "post"))
    # The documented search answer is what the route returns.
    run_id = new_run(http)["id"]
    page = http.post(f"{API}/runs/search", json={}).json()
    assert page["runs"][0]["id"] == run_id
    answer = doc["paths"][f"{API}/runs/search"]["post"]["responses"]["200"]["content"]
    jsonschema.validate(
        page, {**answer["application/json"]["schema"], "components": doc["components"]}
    )
