"""The reconciler's HTTP face in process (Starlette's TestClient), and once on a real uvicorn.

Versions are served by ``CountingLoader``: each predicts its own number, so
an answer says which version gave it.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

import gitml
from gitml.cli import reconcile as cli_reconcile
from gitml.registry.stages import Stages
from gitml.serving.reconcile import Reconciler, Source
from gitml.serving.reconcile_app import create_app
from testing.procs import wait_for
from testing.reconcile import STAGE, CountingLoader, CountingSource, write_declaration
from testing.serving import read_until_closed, stalled_request, uvicorn_server

TOKEN = "s3cret"
BODY = json.dumps({"inputs": [[1.0, 2.0]]})
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def reconciler(client: gitml.Client) -> Reconciler:
    return Reconciler(Source(client.store), STAGE, client.config, loader=CountingLoader())


def app_client(reconciler: Reconciler, token: str | None = None) -> TestClient:
    tokens = {token: "write"} if token else None
    return TestClient(create_app(reconciler, interval=60, tokens=tokens, run_loop=False))


def score(http: TestClient, path: str = "/invocations", **headers: str) -> httpx2.Response:
    return http.post(path, content=BODY, headers={**JSON, **headers})


def test_health_is_503_until_synced_then_200(reconciler: Reconciler, stages: Stages) -> None:
    http = app_client(reconciler)
    response = http.get("/health")
    assert response.status_code == 503
    assert response.json() == {"ready": False, "reason": "not synced yet"}
    reconciler.reconcile()  # no stage branch yet
    assert http.get("/health").json()["reason"] == "branch gitml/production does not exist"
    assert score(http).status_code == 503
    done = stages.assign("adder", 1, STAGE)
    reconciler.reconcile()
    response = http.get("/health")
    assert response.status_code == 200
    assert response.json() == {"ready": True, "revision": done.commit}
    assert http.get("/ping").status_code == 200
    assert http.get("/version").text == gitml.__version__


def test_invocations_answer_with_the_version_and_revision(
    reconciler: Reconciler, stages: Stages
) -> None:
    done = stages.assign("adder", 2, STAGE)
    reconciler.reconcile()
    http = app_client(reconciler)
    for path in ("/invocations", "/models/adder/invocations"):
        response = score(http, path)
        assert response.status_code == 200, response.text
        assert response.json() == {"predictions": [2]}
        assert response.headers["x-gitml-model-version"] == "adder/2"
        assert response.headers["x-gitml-revision"] == done.commit
    # A scoring error is the scoring core's, with the headers too.
    bad = http.post("/invocations", content=b"{", headers=JSON)
    assert bad.status_code == 400 and bad.json()["error_code"] == "BAD_REQUEST"
    assert bad.headers["x-gitml-model-version"] == "adder/2"
    wrong = http.post("/invocations", content=BODY, headers={"Content-Type": "text/plain"})
    assert wrong.status_code == 415


def test_undeclared_models_are_404_with_a_clear_message(
    client: gitml.Client, reconciler: Reconciler, stages: Stages
) -> None:
    stages.assign("adder", 1, STAGE)
    stages.assign("other", 1, STAGE)
    reconciler.reconcile()
    http = app_client(reconciler)
    response = score(http, "/models/nothing/invocations")
    assert response.status_code == 404
    assert response.json() == {
        "error_code": "RESOURCE_DOES_NOT_EXIST",
        "message": "model 'nothing' is not declared on gitml/production",
    }
    response = score(http)
    assert response.status_code == 404
    assert response.json()["message"] == (
        "/invocations needs exactly one declared model (declared: adder, other); "
        "use /models/<name>/invocations"
    )
    assert score(http, "/models/other/invocations").headers["x-gitml-model-version"] == "other/1"
    # Deleting a declaration stops serving that model.
    stages.remove("other", STAGE)
    reconciler.reconcile()
    response = score(http, "/models/other/invocations")
    assert response.status_code == 404
    assert "'other' is not declared on gitml/production" in response.json()["message"]
    assert score(http).headers["x-gitml-model-version"] == "adder/1"
    # Only GET on the read routes, only POST on the scoring routes.
    assert http.get("/invocations").status_code == 405
    assert http.post("/status").status_code == 405


def test_an_empty_declaration_serves_nothing_when_allowed(client: gitml.Client) -> None:
    write_declaration(client.store, STAGE, "adder", None)  # a branch with no model
    reconciler = Reconciler(
        Source(client.store), STAGE, client.config, loader=CountingLoader(), allow_empty=True
    )
    reconciler.reconcile()
    http = app_client(reconciler)
    assert http.get("/health").status_code == 200
    response = score(http)
    assert response.status_code == 404
    assert "(declared: none)" in response.json()["message"]


def test_a_canary_splits_and_a_header_pins(reconciler: Reconciler, stages: Stages) -> None:
    stages.assign("adder", 1, STAGE)
    stages.assign("adder", 2, STAGE, weight=10)
    reconciler.reconcile()
    http = app_client(reconciler)
    answered = Counter(score(http).headers["x-gitml-model-version"] for _ in range(50))
    assert answered == {"adder/1": 45, "adder/2": 5}
    for _ in range(3):
        response = score(http, **{"X-Gitml-Version": "2"})
        assert response.json() == {"predictions": [2]}
    unknown = score(http, **{"X-Gitml-Version": "3"})
    assert unknown.status_code == 404
    assert unknown.json()["message"] == "model 'adder': version 3 is not served (served: 1, 2)"
    invalid = score(http, **{"X-Gitml-Version": "two"})
    assert invalid.status_code == 400
    assert invalid.json()["message"] == "x-gitml-version must be a version number"


def test_status_reports_a_degraded_revision(
    client: gitml.Client, reconciler: Reconciler, stages: Stages
) -> None:
    good = stages.assign("adder", 1, STAGE).commit
    reconciler.reconcile()
    bad = write_declaration(
        client.store, STAGE, "adder", "model: adder\nversions:\n- version: 2\n  weight: 90\n"
    )
    reconciler.reconcile()
    http = app_client(reconciler)
    status = http.get("/status").json()
    assert status["health"] == "Degraded"
    assert status["last_error"] == "models/adder.yaml: weights sum to 90, not 100"
    assert (status["desired_revision"], status["applied_revision"]) == (bad, good)
    assert status["last_attempted_revision"] == bad
    assert status["models"]["adder"][0]["version"] == 1
    assert [h["result"] for h in status["history"]] == ["Failed", "Synced"]
    assert all(h["seconds"] >= 0 for h in status["history"])
    # The last good revision keeps serving, and the replica stays ready.
    assert score(http).headers["x-gitml-model-version"] == "adder/1"
    assert http.get("/health").status_code == 200


def test_metrics_count_requests_per_version(reconciler: Reconciler, stages: Stages) -> None:
    stages.assign("adder", 1, STAGE)
    stages.assign("adder", 2, STAGE, weight=50)
    reconciler.reconcile()
    http = app_client(reconciler)
    for _ in range(6):
        score(http)
    http.post("/invocations", content=b"{", headers=JSON)  # a 400, from version 1
    response = http.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert 'gitml_requests_total{model="adder",version="1",status="200"} 3\n' in text
    assert 'gitml_requests_total{model="adder",version="2",status="200"} 3\n' in text
    assert 'gitml_requests_total{model="adder",version="1",status="400"} 1\n' in text
    assert 'gitml_request_seconds_count{model="adder",version="1"} 4\n' in text
    assert 'gitml_reconcile_total{outcome="Synced"} 1\n' in text


def test_the_token_guards_scoring_and_the_hook(reconciler: Reconciler, stages: Stages) -> None:
    stages.assign("adder", 1, STAGE)
    reconciler.reconcile()
    http = app_client(reconciler, token=TOKEN)
    for path in ("/invocations", "/models/adder/invocations"):
        for given in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            response = score(http, path, **given)
            assert response.status_code == 401, response.text
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["error_code"] == "UNAUTHENTICATED"
        assert score(http, path, Authorization=f"Bearer {TOKEN}").status_code == 200
    assert http.post("/hooks/git").status_code == 401
    assert http.post("/hooks/git", headers={"Authorization": "Bearer x"}).status_code == 401
    response = http.post("/hooks/git", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 202 and response.json() == {"reconcile": "triggered"}
    # Probes, status and metrics stay open: a load balancer and Prometheus have no token.
    for path in ("/ping", "/health", "/status", "/metrics", "/version"):
        assert http.get(path).status_code == 200, path


def test_the_hook_needs_a_configured_token(reconciler: Reconciler) -> None:
    response = app_client(reconciler).post("/hooks/git")
    assert response.status_code == 403
    assert response.json()["message"] == ("start the reconciler with --token-file to use webhooks")


def test_the_hook_reconciles_now(client: gitml.Client, stages: Stages) -> None:
    """With the loop running on a long interval, only the hook can pick up a new commit."""
    source = CountingSource(client.store)
    reconciler = Reconciler(source, STAGE, client.config, loader=CountingLoader())
    stages.assign("adder", 1, STAGE)
    app = create_app(reconciler, interval=3600, tokens={TOKEN: "write"})
    with TestClient(app) as http:
        wait_for(lambda: http.get("/health").status_code == 200, 10, "/health")
        assert http.get("/ping").status_code == 200
        stages.assign("adder", 2, STAGE)
        assert score(http, Authorization=f"Bearer {TOKEN}").json() == {"predictions": [1]}
        http.post("/hooks/git", headers={"Authorization": f"Bearer {TOKEN}"})
        wait_for(
            lambda: score(http, Authorization=f"Bearer {TOKEN}").json() == {"predictions": [2]},
            10,
            "version 2",
        )
        # Two passes over the source: the one at start-up and the hook's, none of the loop's.
        assert source.refreshes == 2
    assert reconciler._stop.is_set()  # the lifespan stopped the loop


def test_a_real_uvicorn_serves_and_follows(client: gitml.Client, stages: Stages) -> None:
    reconciler = Reconciler(Source(client.store), STAGE, client.config, loader=CountingLoader())
    stages.assign("adder", 1, STAGE)
    with uvicorn_server(create_app(reconciler, interval=0.05)) as url, httpx2.Client() as http:
        wait_for(lambda: http.get(f"{url}/health").status_code == 200, 10, "/health")
        assert http.post(f"{url}/invocations", content=BODY, headers=JSON).json() == {
            "predictions": [1]
        }
        stages.assign("adder", 3, STAGE)
        wait_for(
            lambda: (
                http.post(f"{url}/invocations", content=BODY, headers=JSON).headers[
                    "x-gitml-model-version"
                ]
                == "adder/3"
            ),
            10,
            "version 3",
        )
        assert http.get(f"{url}/status").json()["models"]["adder"][0]["version"] == 3


def test_scoring_refuses_what_models_serve_refuses(reconciler: Reconciler, stages: Stages) -> None:
    stages.assign("adder", 1, STAGE)
    reconciler.reconcile()
    http = app_client(reconciler)
    deep = b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for body in (deep, b'{"inputs": [[' + b"7" * 5000 + b"]]}"):
        response = http.post("/invocations", content=body, headers=JSON)
        assert response.status_code == 400, response.text
        assert response.json()["error_code"] == "BAD_REQUEST"
    app = create_app(reconciler, interval=60, run_loop=False, body_seconds=1.0)
    with uvicorn_server(app) as url, httpx2.Client() as real:
        stalled = stalled_request(url)
        started = time.monotonic()
        answer = real.post(f"{url}/invocations", content=BODY, headers=JSON)
        assert answer.json() == {"predictions": [1]}  # served while that one waits
        head, _, body = read_until_closed(stalled, timeout=10.0).partition(b"\r\n\r\n")
        assert time.monotonic() - started < 5.0
    assert head.startswith(b"HTTP/1.1 408 ")
    assert json.loads(body)["error_code"] == "REQUEST_TIMEOUT"


@pytest.fixture
def event_log() -> Iterator[None]:
    """Leave the ``gitml.serving.reconcile`` logger as it was (build_app adds a handler)."""
    log = logging.getLogger("gitml.serving.reconcile")
    handlers, level = list(log.handlers), log.level
    yield
    log.handlers[:] = handlers
    log.setLevel(level)


@pytest.mark.usefixtures("event_log")
def test_build_app_logs_events_as_json_on_stderr(
    client: gitml.Client, stages: Stages, capfd: pytest.CaptureFixture[str]
) -> None:
    stages.assign("adder", 1, STAGE)
    settings: dict[str, object] = {
        "stage": STAGE,
        "repo": str(client.store.root),
        "remote": None,
        "cache": None,
        "interval": 0.05,
        "fetch_timeout": 10.0,
        "tokens": None,
        "allow_empty": False,
    }
    app = cli_reconcile.build_app(settings)
    with TestClient(app, base_url="http://127.0.0.1:8080") as http:  # type: ignore[arg-type]
        wait_for(lambda: http.get("/health").status_code == 200, 10, "/health")
    out, err = capfd.readouterr()
    assert out == ""
    events = [json.loads(line) for line in err.splitlines()]
    assert [e["event"] for e in events] == ["reconcile_started", "reconcile_synced"]


def test_the_cli_refuses_bad_settings(tmp_path: Path, client: gitml.Client) -> None:
    runner = CliRunner()
    cases = [
        (["--interval", "soon"], "interval 'soon'"),
        (["--stage", "Bad Stage"], "use lowercase letters"),
        (["--repo", ".", "--remote", "x"], "give --repo or --remote, not both"),
        (["--cache", "c"], "give --remote"),
        (["--host", "0.0.0.0"], "give --token-file"),
    ]
    from gitml.cli import main

    for args, words in cases:
        result = runner.invoke(main, ["reconcile", *args])
        assert result.exit_code == 1, result.output
        assert words in result.stderr, result.stderr
    empty = tmp_path / "empty-token"
    empty.write_text("\n")
    result = runner.invoke(main, ["reconcile", "--token-file", str(empty)])
    assert result.exit_code == 1 and "holds no token" in result.stderr
