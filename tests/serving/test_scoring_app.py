"""The scoring server in-process (Starlette's TestClient) and once on a real uvicorn."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
import pytest
from starlette.testclient import TestClient

import gitml
from gitml.serving.scoring_app import create_app, load_model
from testing.serving import StandInModel, read_until_closed, stalled_request, uvicorn_server

COLUMNS = ["a", "b"]


def total(data: Any) -> Any:
    """Row sums: an array in, an array out; a frame in, a Series out."""
    if isinstance(data, dict):
        return {name: np.asarray(value) * 2 for name, value in data.items()}
    return np.asarray(data).sum(axis=1)


@pytest.fixture
def client() -> TestClient:
    return TestClient(create_app(StandInModel(total, columns=COLUMNS), max_body_bytes=1000))


def post(client: TestClient, body: Any, content_type: str = "application/json") -> httpx2.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/invocations", content=raw, headers={"Content-Type": content_type})


@pytest.mark.parametrize(
    ("body", "content_type", "predictions"),
    [
        ({"dataframe_split": {"columns": COLUMNS, "data": [[1, 2], [3, 4]]}}, None, [3, 7]),
        ({"dataframe_records": [{"a": 1, "b": 2}, {"b": 4, "a": 3}]}, None, [3, 7]),
        ({"inputs": [[1, 2], [3, 4]]}, None, [3, 7]),
        ({"instances": [[1, 2], [3, 4]]}, None, [3, 7]),
        ({"instances": [{"a": 1}, {"a": 2}]}, None, {"a": [2, 4]}),
        ({"inputs": {"a": [1, 2]}, "params": {"k": 1}}, None, {"a": [2, 4]}),
        (b"a,b\n1,2\n3,4\n", "text/csv", [3, 7]),
        (b"a,b\n1,2\n", "text/csv; charset=utf-8", [3]),
        ({"inputs": [[1, 2]]}, "application/json; charset=UTF-8", [3]),
    ],
)
def test_every_input_format(
    client: TestClient, body: Any, content_type: str | None, predictions: Any
) -> None:
    response = post(client, body, content_type or "application/json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"predictions": predictions}


def test_params_reach_the_model() -> None:
    model = StandInModel(total)
    post(TestClient(create_app(model)), {"inputs": [[1, 2]], "params": {"top_k": 2}})
    assert model.calls[-1][1] == {"top_k": 2}


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code", "words"),
    [
        (b'{"inputs": [1', "application/json", 400, "BAD_REQUEST", "not valid JSON"),
        (
            {"inputs": [[1, 2]], "dataframe_records": []},
            "application/json",
            400,
            "BAD_REQUEST",
            "exactly one of",
        ),
        ({"rows": [[1, 2]]}, "application/json", 400, "BAD_REQUEST", "exactly one of"),
        (b"a,b\n1,2\n", "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE", "text/plain"),
        (b'"x"' * 400, "application/json", 413, "REQUEST_LIMIT_EXCEEDED", "over the limit"),
        (
            {"dataframe_records": [{"a": 1}]},
            "application/json",
            400,
            "INVALID_PARAMETER_VALUE",
            "column 'b'",
        ),
    ],
)
def test_errors_are_json_naming_the_problem(
    client: TestClient, body: Any, content_type: str, status: int, code: str, words: str
) -> None:
    response = post(client, body, content_type)
    assert response.status_code == status, response.text
    assert response.json()["error_code"] == code
    assert words in response.json()["message"]


def test_chunked_oversized_body_is_refused_without_content_length(client: TestClient) -> None:
    def chunks() -> Any:
        for _ in range(100):
            yield b"[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"

    response = client.post(
        "/invocations", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413


def test_missing_content_type_is_415(client: TestClient) -> None:
    response = client.post("/invocations", content=b'{"inputs": [[1, 2]]}')
    assert response.status_code == 415


def test_a_model_exception_is_400_and_the_server_keeps_serving(client: TestClient) -> None:
    broken = post(client, {"inputs": [[1, 2]], "params": {"fail": True}})
    assert broken.status_code == 400
    assert broken.json() == {
        "error_code": "BAD_REQUEST",
        "message": "the model could not score this input: RuntimeError: the model broke",
    }
    assert post(client, {"inputs": [[1, 2]]}).json() == {"predictions": [3]}


def test_ping_health_version(client: TestClient) -> None:
    assert client.get("/ping").status_code == 200
    assert client.get("/health").status_code == 200
    assert client.get("/version").text == gitml.__version__
    assert client.get("/invocations").status_code == 405


def test_routing_answers_as_a_starlette_app_did(client: TestClient) -> None:
    missing = client.get("/nowhere")
    assert (missing.status_code, missing.text) == (404, "Not Found")
    assert missing.headers["content-type"] == "text/plain; charset=utf-8"
    wrong = client.get("/invocations")
    assert (wrong.status_code, wrong.text, wrong.headers["allow"]) == (
        405,
        "Method Not Allowed",
        "POST",
    )
    assert client.post("/ping").headers["allow"] == "GET, HEAD"
    assert client.head("/ping").status_code == 200
    assert client.get("/version").headers["content-type"] == "text/plain; charset=utf-8"
    slash = client.get("/ping/?x=1", follow_redirects=False)
    assert slash.status_code == 307
    assert slash.headers["location"] == "http://testserver/ping?x=1"
    assert client.get("/ping/").status_code == 200  # followed


def test_lifespan_starts_and_stops() -> None:
    with TestClient(create_app(StandInModel(total))) as client:  # runs the lifespan
        assert client.get("/ping").status_code == 200


def test_no_model_is_503() -> None:
    client = TestClient(create_app(None))
    assert client.get("/ping").status_code == 503
    assert post(client, {"inputs": [[1]]}).status_code == 503


def test_token_is_required_when_set() -> None:
    client = TestClient(create_app(StandInModel(total), token="s3cret"))
    assert post(client, {"inputs": [[1, 2]]}).status_code == 401
    wrong = client.post(
        "/invocations",
        json={"inputs": [[1, 2]]},
        headers={"Authorization": "Bearer nope"},
    )
    assert wrong.status_code == 401
    right = client.post(
        "/invocations",
        json={"inputs": [[1, 2]]},
        headers={"Authorization": "Bearer s3cret"},
    )
    assert right.json() == {"predictions": [3]}
    assert client.get("/ping").status_code == 200  # health checks need no token


@pytest.mark.parametrize("offload_above_bytes", [0, 10_000])
def test_threadpool_and_inline_give_the_same_answers(offload_above_bytes: int) -> None:
    app = create_app(StandInModel(total), offload_above_bytes=offload_above_bytes)
    assert post(TestClient(app), {"inputs": [[1, 2]]}).json() == {"predictions": [3]}


@pytest.mark.slow
def test_real_uvicorn_serves_a_saved_sklearn_model_as_in_process(tmp_path: Path) -> None:
    from gitml.models import sklearn as sklearn_flavor
    from testing.models import iris_classifier

    model, frame = iris_classifier()
    sklearn_flavor.save_model(model, tmp_path / "model", input_example=frame.head(3))
    served = load_model(str(tmp_path / "model"))
    expected = model.predict(frame).tolist()
    columns = list(frame.columns)
    records = frame.to_dict("records")
    split = {"dataframe_split": {"columns": columns, "data": frame.to_numpy().tolist()}}
    bodies = [
        ("application/json", json.dumps(split)),
        ("application/json", json.dumps({"dataframe_records": records})),
        ("application/json", json.dumps({"instances": records})),
        ("application/json", json.dumps({"inputs": {c: frame[c].tolist() for c in columns}})),
        ("text/csv", frame.to_csv(index=False)),
    ]
    with uvicorn_server(create_app(served)) as url, httpx2.Client(base_url=url) as http:
        assert http.get("/ping").status_code == 200
        assert http.get("/health").status_code == 200
        assert http.get("/version").text == gitml.__version__
        for content_type, body in bodies:
            response = http.post(
                "/invocations", content=body, headers={"Content-Type": content_type}
            )
            assert response.status_code == 200, (content_type, body[:80], response.text)
            assert response.json() == {"predictions": expected}
        wrong = http.post("/invocations", json={"dataframe_records": [{"x": 1.0}]})
        assert wrong.status_code == 400
        assert wrong.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "sepal length (cm)" in wrong.json()["message"]
        assert http.post("/invocations", json=split).json() == {"predictions": expected}
        # The request MLflow's layout saves beside the example is taken as it is.
        example = (tmp_path / "model" / "serving_input_example.json").read_bytes()
        response = http.post(
            "/invocations", content=example, headers={"Content-Type": "application/json"}
        )
        assert response.json() == {"predictions": expected[:3]}


def test_each_worker_builds_its_app_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from gitml.serving import scoring_app

    monkeypatch.setenv(scoring_app.ENV_MODEL_URI, "runs:/abc/model")
    monkeypatch.setenv(scoring_app.ENV_TOKEN, "t")
    monkeypatch.setenv(scoring_app.ENV_MAX_BODY, "50")
    loaded: list[str] = []

    def loader(uri: str) -> StandInModel:
        loaded.append(uri)
        return StandInModel(total)

    client = TestClient(scoring_app.app_from_environment(loader))
    assert loaded == ["runs:/abc/model"]
    assert post(client, {"inputs": [[1, 2]]}).status_code == 401
    auth = {"Authorization": "Bearer t"}
    big = client.post("/invocations", json={"inputs": [[1] * 50]}, headers=auth)
    assert big.status_code == 413


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nests too deeply"),
        (b'{"inputs": [[' + b"7" * 5000 + b", 1]]}", "5000 digits does not fit in 64 bits"),
        (b'{"inputs": [[-' + b"9" * 25 + b", NaN]]}", "25 digits does not fit in 64 bits"),
    ],
    ids=["deep", "5000-digits", "beyond-64-bits"],
)
def test_input_json_cannot_take_is_a_json_400(body: bytes, words: str) -> None:
    big = TestClient(create_app(StandInModel(total, columns=COLUMNS)))
    response = post(big, body)
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "BAD_REQUEST"
    assert words in response.json()["message"]


def test_a_body_that_stops_half_way_is_408_and_others_are_served() -> None:
    app = create_app(StandInModel(total, columns=COLUMNS), body_seconds=1.0)
    with uvicorn_server(app) as url, httpx2.Client(base_url=url) as http:
        stalled = stalled_request(url)
        started = time.monotonic()
        for _ in range(3):  # while that one waits
            response = http.post("/invocations", json={"inputs": [[1, 2]]})
            assert response.json() == {"predictions": [3]}
        answer = read_until_closed(stalled, timeout=10.0)
        assert time.monotonic() - started < 5.0
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert json.loads(body)["error_code"] == "REQUEST_TIMEOUT"
