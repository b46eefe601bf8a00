"""The pytorch flavor: a real torch model trained on the CPU, saved, logged, loaded and served."""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
import pandas as pd
import pytest

import gitml
import gitml.pyfunc
import gitml.pytorch
from gitml.format import yamlio
from gitml.serving.scoring_app import create_app
from gitml.serving.scoring_app import load_model as load_for_serving
from testing.models import edit_flavor, torch_predict, torch_regressor
from testing.serving import uvicorn_server

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained() -> tuple[Any, Any]:
    """(a float32 net, its float32 features): trained once for the whole module."""
    return torch_regressor()


def test_save_and_load_round_trip(tmp_path: Path, trained: tuple[Any, Any]) -> None:
    net, x = trained
    expected = torch_predict(net, x)
    gitml.pytorch.save_model(net, tmp_path / "m")
    native = gitml.pytorch.load_model(tmp_path / "m")
    assert isinstance(native, torch.nn.Sequential) and not native.training
    np.testing.assert_array_equal(torch_predict(native, x), expected)
    model = gitml.pyfunc.load_model(tmp_path / "m")
    assert model.signature is None
    for data in (x, pd.DataFrame(x, columns=["a", "b", "c"]), x.tolist(), x.astype("float64")):
        predicted = model.predict(data)
        assert isinstance(predicted, np.ndarray) and predicted.shape == (64, 1)
        np.testing.assert_allclose(predicted, expected, rtol=1e-6)


def test_mlmodel_and_files_are_in_mlflow_format(tmp_path: Path, trained: tuple[Any, Any]) -> None:
    net, x = trained
    gitml.pytorch.save_model(net, tmp_path / "m", input_example=x[:2])
    data = yamlio.load((tmp_path / "m" / "MLmodel").read_bytes())
    assert data["flavors"]["pytorch"] == {
        "code": None,
        "model_data": "data",
        "pytorch_version": torch.__version__,
    }
    pyfunc = data["flavors"]["python_function"]
    assert pyfunc["loader_module"] == "gitml.models.pytorch"
    assert pyfunc["data"] == "data" and pyfunc["pickle_module_name"] == "pickle"
    assert (tmp_path / "m" / "data" / "pickle_module_info.txt").read_text() == "pickle"
    assert (tmp_path / "m" / "data" / "model.pth").is_file()
    assert json.loads(data["signature"]["inputs"]) == [
        {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 3]}}
    ]
    assert json.loads(data["signature"]["outputs"]) == [
        {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 1]}}
    ]
    assert data["saved_input_example_info"]["type"] == "ndarray"
    requirements = (tmp_path / "m" / "requirements.txt").read_text().splitlines()
    # The CPU wheel is 2.13.0+cpu; the local label is dropped so pip can install it anywhere.
    assert f"torch=={torch.__version__.split('+')[0]}" in requirements
    assert any(r.startswith("numpy==") for r in requirements)


def test_the_signature_is_enforced(tmp_path: Path, trained: tuple[Any, Any]) -> None:
    net, x = trained
    gitml.pytorch.save_model(net, tmp_path / "m", input_example=x[:2])
    model = gitml.pyfunc.load_model(tmp_path / "m")
    np.testing.assert_allclose(model.predict(x), torch_predict(net, x), rtol=1e-6)
    one = model.predict(x[0])  # one example without the batch axis
    np.testing.assert_allclose(one, torch_predict(net, x[:1]), rtol=1e-6)
    whole = np.round(x).astype("int64")  # integers convert losslessly to float32
    np.testing.assert_allclose(
        model.predict(whole), torch_predict(net, whole.astype("float32")), rtol=1e-6
    )
    with pytest.raises(gitml.InvalidInput, match=r"expected shape \[-1, 3\], got \[2, 4\]"):
        model.predict(np.zeros((2, 4), dtype="float32"))
    with pytest.raises(gitml.InvalidInput, match="expected dtype float32, got float64"):
        model.predict(x.astype("float64"))
    with pytest.raises(gitml.InvalidInput, match="expected dtype float32, got <U"):
        model.predict(np.array([["a", "b", "c"]]))


def test_log_model_then_load_through_runs_uri(repo: Path, trained: tuple[Any, Any]) -> None:
    net, x = trained
    with gitml.start_run() as run:
        info = gitml.pytorch.log_model(net, name="model", input_example=x[:2])
    assert info.model_uri == f"runs:/{run.run_id}/model"
    assert set(info.flavors) == {"python_function", "pytorch"}
    assert info.signature is not None and info.signature.inputs is not None
    assert info.signature.inputs.is_tensor_spec()
    expected = torch_predict(net, x)
    loaded = gitml.pyfunc.load_model(info.model_uri)
    assert loaded.metadata.run_id == run.run_id
    np.testing.assert_allclose(loaded.predict(x), expected, rtol=1e-6)
    native = gitml.pytorch.load_model(info.model_uri)
    np.testing.assert_array_equal(torch_predict(native, x), expected)
    listed = {a.path for a in gitml.Client().list_artifacts(run.run_id)}
    assert {"model/MLmodel", "model/data/model.pth", "model/data/pickle_module_info.txt"} <= listed


def test_a_changed_model_file_is_refused_before_unpickling(
    tmp_path: Path, trained: tuple[Any, Any]
) -> None:
    net, _ = trained
    gitml.pytorch.save_model(net, tmp_path / "m")
    with open(tmp_path / "m" / "data" / "model.pth", "ab") as f:
        f.write(b"\0")
    with pytest.raises(gitml.Corrupt, match=r"data/model\.pth"):
        gitml.pytorch.load_model(tmp_path / "m")
    with pytest.raises(gitml.Corrupt, match=r"data/model\.pth"):
        gitml.pyfunc.load_model(tmp_path / "m")


def test_only_modules_are_saved(tmp_path: Path) -> None:
    with pytest.raises(gitml.InvalidInput, match=r"torch\.nn\.Module"):
        gitml.pytorch.save_model({"weights": [1.0]}, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def _mlflow_layout(path: Path, net: Any, pickled_with: str) -> None:
    """A model directory as ``mlflow.pytorch.save_model(serialization_format="pickle")``
    writes it: no gitml manifest, MLflow's loader module and its pickle module's name."""
    (path / "data").mkdir(parents=True)
    torch.save(net, path / "data" / "model.pth", pickle_module=pickle)
    (path / "data" / "pickle_module_info.txt").write_text(pickled_with)
    mlmodel = {
        "flavors": {
            "python_function": {
                "code": None,
                "data": "data",
                "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
                "loader_module": "mlflow.pytorch",
                "model_config": {"device": None},
                "pickle_module_name": pickled_with,
                "python_version": "3.11.7",
            },
            "pytorch": {"code": None, "model_data": "data", "pytorch_version": torch.__version__},
        },
        "mlflow_version": "3.1.0",
        "model_uuid": "0" * 32,
        "utc_time_created": "2026-01-01 00:00:00.000000",
    }
    (path / "MLmodel").write_bytes(yamlio.dump(mlmodel))


def test_a_model_in_mlflows_layout_loads(tmp_path: Path, trained: tuple[Any, Any]) -> None:
    net, x = trained
    _mlflow_layout(tmp_path / "m", net, "mlflow.pytorch.pickle_module")
    model = gitml.pyfunc.load_model(tmp_path / "m")
    np.testing.assert_allclose(model.predict(x), torch_predict(net, x), rtol=1e-6)
    native = gitml.pytorch.load_model(tmp_path / "m")
    np.testing.assert_array_equal(torch_predict(native, x), torch_predict(net, x))
    _mlflow_layout(tmp_path / "dill", net, "dill")
    with pytest.raises(gitml.InvalidInput, match="pickled with 'dill'"):
        gitml.pyfunc.load_model(tmp_path / "dill")


def _bodies(x: Any) -> list[tuple[str, str]]:
    rows = x.tolist()
    split = {"dataframe_split": {"columns": ["a", "b", "c"], "data": rows}}
    csv = pd.DataFrame(x, columns=["a", "b", "c"]).to_csv(index=False, float_format="%.17g")
    return [
        ("application/json", json.dumps({"inputs": rows})),
        ("application/json", json.dumps({"instances": rows})),
        ("application/json", json.dumps(split)),
        ("text/csv", csv),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_real_uvicorn_serves_it_as_in_process(tmp_path: Path, dtype: str) -> None:
    """float64: with the signature its example gives. float32: without one (see the xfail)."""
    net, x = torch_regressor(dtype)
    example = x[:2] if dtype == "float64" else None
    gitml.pytorch.save_model(net, tmp_path / "m", input_example=example)
    expected = torch_predict(net, x)
    served = load_for_serving(str(tmp_path / "m"))
    with uvicorn_server(create_app(served)) as url, httpx2.Client(base_url=url) as http:
        assert http.get("/ping").status_code == 200
        assert http.get("/health").status_code == 200
        assert http.get("/version").text == gitml.__version__
        for content_type, body in _bodies(x):
            response = http.post(
                "/invocations", content=body, headers={"Content-Type": content_type}
            )
            assert response.status_code == 200, (content_type, body[:80], response.text)
            predictions = np.asarray(response.json()["predictions"], dtype=dtype)
            np.testing.assert_allclose(predictions, expected, rtol=1e-6)
        if example is not None:
            wrong = http.post("/invocations", json={"inputs": [[1.0, 2.0]]})
            assert wrong.status_code == 400
            assert wrong.json()["error_code"] == "INVALID_PARAMETER_VALUE"
            assert "expected shape [-1, 3], got [1, 2]" in wrong.json()["message"]


def test_a_float32_signature_is_served_from_json(tmp_path: Path, trained: tuple[Any, Any]) -> None:
    from starlette.testclient import TestClient

    net, x = trained
    gitml.pytorch.save_model(net, tmp_path / "m", input_example=x[:2])
    client = TestClient(create_app(load_for_serving(str(tmp_path / "m"))))
    response = client.post("/invocations", json={"inputs": x.tolist()})
    assert response.status_code == 200, response.text
    expected = torch_predict(net, x)
    np.testing.assert_allclose(np.asarray(response.json()["predictions"]), expected, rtol=1e-6)
    records = client.post("/invocations", json={"instances": x[:3].tolist()})
    assert records.status_code == 200, records.text


MLFLOW_SIDE = """
import json, sys
import numpy as np
import torch
import mlflow.pyfunc, mlflow.pytorch

gitml_model, pickled, exported = sys.argv[1:4]
x = np.asarray(json.loads(sys.stdin.read()), dtype="float32")
out = {}
out["pyfunc"] = mlflow.pyfunc.load_model(gitml_model).predict(x).tolist()
net = mlflow.pytorch.load_model(gitml_model)
with torch.no_grad():
    out["native"] = net(torch.from_numpy(x)).numpy().tolist()
mlflow.pytorch.save_model(
    net, pickled, serialization_format="pickle", pip_requirements=["torch"]
)
mlflow.pytorch.save_model(
    net, exported, serialization_format="pt2", input_example=x[:2], pip_requirements=["torch"]
)
print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow is not installed")
def test_mlflow_loads_gitml_models_and_gitml_loads_mlflows(
    tmp_path: Path, trained: tuple[Any, Any]
) -> None:  # pragma: no cover - optional package
    net, x = trained
    gitml.pytorch.save_model(net, tmp_path / "gitml", input_example=x[:2])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "MLFLOW_TRACKING_URI": (tmp_path / "mlruns").as_uri(),
    }
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(MLFLOW_SIDE)]
        + [str(tmp_path / name) for name in ("gitml", "pickled", "exported")],
        input=json.dumps(x.tolist()),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    expected = torch_predict(net, x)
    out = json.loads(done.stdout.splitlines()[-1])
    np.testing.assert_allclose(np.asarray(out["pyfunc"]), expected, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out["native"]), expected, rtol=1e-6)
    mlmodel = yamlio.load((tmp_path / "pickled" / "MLmodel").read_bytes())
    assert mlmodel["flavors"]["python_function"]["loader_module"] == "mlflow.pytorch"
    for name in ("pickled", "exported"):
        model = gitml.pyfunc.load_model(tmp_path / name)
        np.testing.assert_allclose(model.predict(x), expected, rtol=1e-6)
        native = gitml.pytorch.load_model(tmp_path / name)
        np.testing.assert_allclose(torch_predict(native, x), expected, rtol=1e-6)


@pytest.mark.parametrize("how", ["relative", "absolute"])
def test_model_data_outside_the_model_directory_is_never_loaded(
    tmp_path: Path, trained: tuple[Any, Any], how: str
) -> None:
    model = tmp_path / "m"
    gitml.pytorch.save_model(trained[0], model)
    (tmp_path / "data").mkdir()
    torch.save(torch.nn.Identity(), tmp_path / "data" / "model.pth")
    data = str(tmp_path / "data") if how == "absolute" else "../data"
    edit_flavor(model, "pytorch", model_data=data)
    edit_flavor(model, "python_function", data=data)
    for load in [gitml.pytorch.load_model, gitml.pyfunc.load_model]:
        with pytest.raises(gitml.InvalidInput, match=f"'{data}/model.pth' leads outside {model}"):
            load(model)
