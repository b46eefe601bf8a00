"""``gitml models serve`` and ``gitml models predict``: thin over the scoring core."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gitml.serving import scoring_app
from testing.cli import cli, one_error_line
from testing.serving import StandInModel


@pytest.fixture
def loaded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every URI the command loads; the model sums each row."""
    uris: list[str] = []

    def load(uri: str) -> StandInModel:
        uris.append(uri)
        return StandInModel(lambda data: np.asarray(data).sum(axis=1), columns=["a", "b"])

    monkeypatch.setattr(scoring_app, "load_model", load)
    return uris


def test_predict_json_to_stdout(tmp_path: Path, loaded: list[str]) -> None:
    body = tmp_path / "in.json"
    body.write_text(json.dumps({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}}))
    result = cli("models", "predict", "-m", "runs:/abc/model", "-i", str(body))
    assert json.loads(result.stdout) == {"predictions": [3]}
    assert loaded == ["runs:/abc/model"]


def test_predict_csv_to_a_file(tmp_path: Path, loaded: list[str]) -> None:
    body = tmp_path / "in.txt"
    body.write_text("a,b\n1,2\n5,5\n")
    out = tmp_path / "out.json"
    cli("models", "predict", "-m", "m", "-i", str(body), "-t", "csv", "-o", str(out))
    assert json.loads(out.read_text()) == {"predictions": [3, 10]}


def test_predict_bad_input_is_one_line(tmp_path: Path, loaded: list[str]) -> None:
    body = tmp_path / "in.json"
    body.write_text('{"dataframe_records": [{"a": 1}]}')
    line = one_error_line(cli("models", "predict", "-m", "m", "-i", str(body), ok=False))
    assert "column 'b'" in line


def test_serve_refuses_a_public_host_without_a_token(
    loaded: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITML_SERVE_TOKEN", raising=False)
    line = one_error_line(cli("models", "serve", "-m", "m", "--host", "0.0.0.0", ok=False))
    assert "--token" in line
    assert loaded == []


def test_serve_runs_uvicorn_on_loopback(loaded: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    for name in (scoring_app.ENV_MODEL_URI, scoring_app.ENV_TOKEN, scoring_app.ENV_MAX_BODY):
        monkeypatch.delenv(name, raising=False)  # the command sets them for its workers
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    cli("models", "serve", "-m", "m", "--port", "5123")
    assert calls[0][1]["host"] == "127.0.0.1"
    assert calls[0][1]["port"] == 5123
    monkeypatch.setenv("GITML_SERVE_TOKEN", "t")
    cli("models", "serve", "-m", "m", "--host", "0.0.0.0", "--workers", "2")
    assert calls[1][0] == "gitml.serving.scoring_app:app_from_environment"
    assert calls[1][1]["workers"] == 2


@pytest.fixture
def saved_iris(tmp_path: Path) -> tuple[Path, Any, Any]:
    """A real LogisticRegression saved with the sklearn flavor: (path, model, features)."""
    from gitml.models import sklearn as sklearn_flavor
    from testing.models import iris_classifier

    model, frame = iris_classifier()
    sklearn_flavor.save_model(model, tmp_path / "model", input_example=frame.head(3))
    return tmp_path / "model", model, frame


def test_predict_with_a_saved_model(tmp_path: Path, saved_iris: tuple[Path, Any, Any]) -> None:
    path, model, frame = saved_iris
    body = tmp_path / "in.csv"
    frame.to_csv(body, index=False)
    result = cli("models", "predict", "-m", str(path), "-i", str(body))
    assert json.loads(result.stdout) == {"predictions": model.predict(frame).tolist()}


@pytest.mark.slow
def test_serve_as_a_real_process(saved_iris: tuple[Path, Any, Any], tmp_path: Path) -> None:
    import subprocess
    import sys

    import httpx2

    from testing.procs import child_env, wait_for
    from testing.serving import free_socket

    path, model, frame = saved_iris
    with free_socket() as sock:
        port = sock.getsockname()[1]
    exe = str(Path(sys.executable).with_name("gitml"))
    proc = subprocess.Popen(
        [exe, "models", "serve", "-m", str(path), "--port", str(port)],
        env=child_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def answers() -> bool:
            assert proc.poll() is None, proc.communicate()[1]
            return httpx2.get(f"{url}/ping").status_code == 200

        wait_for(answers, 60, "the server to answer /ping", retry_on=(httpx2.TransportError,))
        records = frame.head(5).to_dict("records")
        response = httpx2.post(f"{url}/invocations", json={"dataframe_records": records})
        assert response.json() == {"predictions": model.predict(frame.head(5)).tolist()}
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
