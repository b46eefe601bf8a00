"""``serving_input_example.json``: the input example as a scoring request, as MLflow writes it.

MLflow 2.x/3.x saves, beside ``input_example.json``, the example in the form a
client POSTs to ``/invocations`` (``{"dataframe_split": ...}`` for a DataFrame,
``{"inputs": ...}`` for arrays) and names it in ``saved_input_example_info``
as ``serving_input_path``. The file is an ordinary request body: the scoring
server and ``gitml models predict`` take it unchanged.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from starlette.testclient import TestClient

from gitml.format import schemas
from gitml.models import mlmodel
from gitml.models import sklearn as sklearn_flavor
from gitml.serving.scoring_app import create_app, load_model
from testing.cli import cli
from testing.models import iris, iris_classifier

# By name: scikit-learn ships no type information.
clone = importlib.import_module("sklearn.base").clone


@pytest.fixture(scope="module")
def classifier() -> tuple[Any, Any]:
    return iris_classifier()


def test_a_dataframe_example_is_written_as_dataframe_split(
    tmp_path: Path, classifier: tuple[Any, Any]
) -> None:
    model, frame = classifier
    saved = sklearn_flavor.save_model(model, tmp_path / "m", input_example=frame.head(3))
    info = saved.saved_input_example_info
    assert info == {
        "artifact_path": "input_example.json",
        "pandas_orient": "split",
        "serving_input_path": "serving_input_example.json",
        "type": "dataframe",
    }
    text = (tmp_path / "m" / "serving_input_example.json").read_text()
    example = json.loads((tmp_path / "m" / "input_example.json").read_text())
    assert json.loads(text) == {"dataframe_split": example}
    assert example["columns"] == list(frame.columns)
    assert example["data"] == frame.head(3).to_numpy().tolist()
    assert text.startswith('{\n  "dataframe_split": {\n')  # indented as MLflow writes it
    # The MLmodel names it, the schema accepts it, the manifest covers it.
    written = yaml.safe_load((tmp_path / "m" / "MLmodel").read_text())
    assert written["saved_input_example_info"]["serving_input_path"] == (
        "serving_input_example.json"
    )
    assert schemas.check_bytes("MLmodel", (tmp_path / "m" / "MLmodel").read_bytes(), where="",
                               path="MLmodel") == []  # fmt: skip
    assert "serving_input_example.json" in (tmp_path / "m" / mlmodel.MANIFEST).read_text()


def test_an_array_example_is_written_as_inputs(tmp_path: Path, classifier: tuple[Any, Any]) -> None:
    model, frame = classifier
    array = frame.head(2).to_numpy()
    saved = sklearn_flavor.save_model(model, tmp_path / "m", input_example=array)
    info = saved.saved_input_example_info
    assert info is not None
    assert info["type"] == "ndarray"
    assert info["serving_input_path"] == "serving_input_example.json"
    body = json.loads((tmp_path / "m" / info["serving_input_path"]).read_text())
    assert body == {"inputs": array.tolist()}


def test_without_an_example_there_is_no_serving_file(
    tmp_path: Path, classifier: tuple[Any, Any]
) -> None:
    model, _ = classifier
    saved = sklearn_flavor.save_model(model, tmp_path / "m")
    assert saved.saved_input_example_info is None
    assert not (tmp_path / "m" / "serving_input_example.json").exists()


@pytest.mark.parametrize("kind", ["dataframe", "ndarray"])
def test_the_server_scores_the_file_as_it_is(
    tmp_path: Path, classifier: tuple[Any, Any], kind: str
) -> None:
    model, frame = classifier
    example = frame.head(3)
    if kind == "ndarray":  # a model fitted on arrays, which scikit-learn scores without warning
        features, labels = iris()
        model = clone(model).fit(features.to_numpy(), labels)
        example = example.to_numpy()
    sklearn_flavor.save_model(model, tmp_path / "m", input_example=example)
    body = (tmp_path / "m" / "serving_input_example.json").read_bytes()
    client = TestClient(create_app(load_model(str(tmp_path / "m"))))
    response = client.post(
        "/invocations", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    expected = model.predict(example)
    assert response.json() == {"predictions": np.asarray(expected).tolist()}


def test_models_predict_takes_the_file_as_it_is(
    tmp_path: Path, classifier: tuple[Any, Any]
) -> None:
    model, frame = classifier
    sklearn_flavor.save_model(model, tmp_path / "m", input_example=frame.head(3))
    result = cli(
        "models", "predict", "-m", str(tmp_path / "m"),
        "-i", str(tmp_path / "m" / "serving_input_example.json"),
    )  # fmt: skip
    assert json.loads(result.stdout) == {"predictions": model.predict(frame.head(3)).tolist()}
