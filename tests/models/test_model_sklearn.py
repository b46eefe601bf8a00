"""The sklearn flavor: save/load round trips, runs:/ URIs, and what MLmodel says."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import gitml
import gitml.pyfunc
import gitml.sklearn
from gitml.format import yamlio
from gitml.models.mlmodel import HISTORY_TAG, Model
from testing.models import edit_flavor, iris_classifier, leads_outside


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    clf, features = iris_classifier()
    gitml.sklearn.save_model(clf, tmp_path / "model")
    loaded = gitml.sklearn.load_model(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict(features), clf.predict(features))
    pyfunc = gitml.pyfunc.load_model(str(tmp_path / "model"))
    np.testing.assert_array_equal(pyfunc.predict(features), clf.predict(features))


def test_mlmodel_is_in_mlflow_format(tmp_path: Path) -> None:
    clf, features = iris_classifier()
    gitml.sklearn.save_model(clf, tmp_path / "m", input_example=features.head(3))
    data = yamlio.load((tmp_path / "m" / "MLmodel").read_bytes())
    assert list(data) == sorted(data)
    pyfunc, sk = data["flavors"]["python_function"], data["flavors"]["sklearn"]
    assert pyfunc["loader_module"] == "gitml.models.sklearn"
    assert pyfunc["model_path"] == "model.pkl"
    assert pyfunc["env"] == {"conda": "conda.yaml", "virtualenv": "python_env.yaml"}
    assert sk["pickled_model"] == "model.pkl" and sk["serialization_format"] == "pickle"
    assert sk["sklearn_version"] and "code" in sk
    assert len(data["model_uuid"]) == 32
    assert data["utc_time_created"][10] == " " and "." in data["utc_time_created"]
    inputs = json.loads(data["signature"]["inputs"])
    assert inputs[0] == {"type": "double", "name": "sepal length (cm)", "required": True}
    outputs = json.loads(data["signature"]["outputs"])
    assert outputs == [{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]
    assert data["saved_input_example_info"] == {
        "artifact_path": "input_example.json",
        "pandas_orient": "split",
        "serving_input_path": "serving_input_example.json",
        "type": "dataframe",
    }
    example = json.loads((tmp_path / "m" / "input_example.json").read_text())
    assert example["columns"] == list(features.columns) and len(example["data"]) == 3
    requirements = (tmp_path / "m" / "requirements.txt").read_text().splitlines()
    assert any(r.startswith("scikit-learn==") for r in requirements)
    env = yamlio.load((tmp_path / "m" / "python_env.yaml").read_bytes())
    assert env["dependencies"] == ["-r requirements.txt"]
    model = Model.load(tmp_path / "m")
    assert model.load_input_example().equals(features.head(3))


def test_save_refuses_an_existing_directory(tmp_path: Path) -> None:
    clf, _ = iris_classifier()
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "x").write_text("x")
    with pytest.raises(gitml.InvalidInput, match="already exists"):
        gitml.sklearn.save_model(clf, tmp_path / "m")


def test_log_model_then_load_through_runs_uri(repo: Path) -> None:
    clf, features = iris_classifier()
    with gitml.start_run() as run:
        info = gitml.sklearn.log_model(clf, "model", input_example=features.head(2))
    assert info.model_uri == f"runs:/{run.run_id}/model"
    assert info.run_id == run.run_id and info.artifact_path == "model"
    assert info.signature is not None and info.signature.inputs is not None
    assert set(info.flavors) == {"python_function", "sklearn"}
    loaded = gitml.pyfunc.load_model(info.model_uri)
    np.testing.assert_array_equal(loaded.predict(features), clf.predict(features))
    assert loaded.metadata.run_id == run.run_id
    assert loaded.metadata.artifact_path == "model"
    assert gitml.sklearn.load_model(info.model_uri).predict(features).tolist() == (
        clf.predict(features).tolist()
    )
    history = json.loads(gitml.get_run(run.run_id).tags[HISTORY_TAG])
    assert [h["artifact_path"] for h in history] == ["model"]
    assert history[0]["model_uuid"] == info.model_uuid
    cache = repo / ".git" / "gitml" / "models-cache"
    assert len(list(cache.iterdir())) == 1  # loaded twice, fetched once


def test_logging_an_unchanged_model_again_stores_no_new_model_blob(repo: Path) -> None:
    clf, _ = iris_classifier()
    with gitml.start_run() as run:
        gitml.sklearn.log_model(clf, "a")
        gitml.sklearn.log_model(clf, "b")
    listed = {a.path: a.sha256 for a in gitml.Client().list_artifacts(run.run_id)}
    assert listed["a/model.pkl"] == listed["b/model.pkl"]
    history = json.loads(gitml.get_run(run.run_id).tags[HISTORY_TAG])
    assert [h["artifact_path"] for h in history] == ["a", "b"]


def test_a_model_saved_by_mlflow_loads_through_the_sklearn_flavor(tmp_path: Path) -> None:
    clf, features = iris_classifier()
    gitml.sklearn.save_model(clf, tmp_path / "m")
    mlmodel = tmp_path / "m" / "MLmodel"
    data = yamlio.load(mlmodel.read_bytes())
    data["flavors"]["python_function"]["loader_module"] = "mlflow.sklearn"
    data["flavors"]["sklearn"]["serialization_format"] = "cloudpickle"
    data["mlflow_version"] = "2.17.0"
    mlmodel.write_bytes(yamlio.dump(data))
    (tmp_path / "m" / "gitml.sha256").unlink()  # MLflow writes no gitml manifest
    loaded = gitml.pyfunc.load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(features), clf.predict(features))


@pytest.mark.skipif(importlib.util.find_spec("skops") is None, reason="skops is not installed")
def test_skops_format(tmp_path: Path) -> None:  # pragma: no cover - optional package
    clf, features = iris_classifier()
    gitml.sklearn.save_model(clf, tmp_path / "m", serialization_format="skops")
    loaded = gitml.sklearn.load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(features), clf.predict(features))


def test_unknown_serialization_format(tmp_path: Path) -> None:
    clf, _ = iris_classifier()
    with pytest.raises(gitml.InvalidInput, match="serialization_format"):
        gitml.sklearn.save_model(clf, tmp_path / "m", serialization_format="joblib")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("how", ["relative", "absolute", "symlink"])
def test_a_pickle_outside_the_model_directory_is_never_loaded(tmp_path: Path, how: str) -> None:
    clf, _ = iris_classifier()
    model = tmp_path / "model"
    gitml.sklearn.save_model(clf, model)
    target = leads_outside(tmp_path, how, model, "model.pkl")
    edit_flavor(model, "sklearn", pickled_model=target)
    edit_flavor(model, "python_function", model_path=target)
    for load in [gitml.sklearn.load_model, gitml.pyfunc.load_model]:
        with pytest.raises(gitml.InvalidInput, match=f"model {model}: '.*' leads outside {model}"):
            load(model)


def test_an_input_example_outside_the_model_directory_is_never_read(tmp_path: Path) -> None:
    clf, features = iris_classifier()
    model = tmp_path / "model"
    gitml.sklearn.save_model(clf, model, input_example=features.head(2))
    (tmp_path / "secret.json").write_text('{"columns": ["a"], "data": [[1]]}')
    data = yamlio.load((model / "MLmodel").read_bytes())
    data["saved_input_example_info"]["artifact_path"] = "../secret.json"
    (model / "MLmodel").write_bytes(yamlio.dump(data))
    with pytest.raises(gitml.InvalidInput, match=r"'\.\./secret\.json' leads outside"):
        Model.load(model).load_input_example()
