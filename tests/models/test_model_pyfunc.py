"""Custom PythonModels with bundled artifacts, and the checks made before unpickling."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

import gitml
import gitml.pyfunc
import gitml.sklearn
from gitml.models.signature import infer_signature
from testing.models import AddOffset, edit_flavor, iris_classifier, leads_outside


def _offset_file(tmp_path: Path, value: str = "10") -> Path:
    path = tmp_path / "offset.txt"
    path.write_text(value)
    return path


def test_custom_model_with_an_artifact(tmp_path: Path) -> None:
    example = np.array([[1.0, 2.0], [3.0, 4.0]])
    gitml.pyfunc.save_model(
        tmp_path / "m",
        AddOffset(),
        artifacts={"offset": _offset_file(tmp_path)},
        signature=infer_signature(example, params={"scale": 1.0}),
    )
    _offset_file(tmp_path, "999")  # the model keeps its own copy
    loaded = gitml.pyfunc.load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(example), example + 10)
    doubled = loaded.predict(example, params={"scale": 2.0})
    np.testing.assert_array_equal(doubled, (example + 10) * 2)
    conf = loaded.metadata.flavors["python_function"]
    assert conf["loader_module"] == "gitml.models.pyfunc"
    assert conf["python_model"] == "python_model.pkl"
    assert conf["artifacts"]["offset"]["path"] == "artifacts/offset/offset.txt"
    assert isinstance(loaded.unwrap_python_model(), AddOffset)
    with pytest.raises(gitml.InvalidInput, match="param 'scale': expected double"):
        loaded.predict(example, params={"scale": "big"})


def test_custom_model_logged_and_loaded_by_runs_uri(repo: Path, tmp_path: Path) -> None:
    with gitml.start_run():
        info = gitml.pyfunc.log_model(
            AddOffset(), "custom", artifacts={"offset": _offset_file(tmp_path, "1.5")}
        )
    loaded = gitml.pyfunc.load_model(info.model_uri)
    np.testing.assert_array_equal(loaded.predict(np.array([1.0])), np.array([2.5]))


def test_save_refuses_what_is_not_a_python_model(tmp_path: Path) -> None:
    with pytest.raises(gitml.InvalidInput, match="PythonModel"):
        gitml.pyfunc.save_model(tmp_path / "m", object())  # type: ignore[arg-type]


class _Boom:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, ("raise SystemExit('unpickled')",))


def test_a_tampered_local_model_is_refused_before_unpickling(tmp_path: Path) -> None:
    clf, _ = iris_classifier()
    gitml.sklearn.save_model(clf, tmp_path / "m")
    (tmp_path / "m" / "model.pkl").write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(gitml.Corrupt, match=r"model\.pkl has sha256"):
        gitml.pyfunc.load_model(tmp_path / "m")
    with pytest.raises(gitml.Corrupt):
        gitml.sklearn.load_model(tmp_path / "m")


def test_a_tampered_run_artifact_is_refused_before_unpickling(repo: Path) -> None:
    (repo / ".gitml.yaml").write_text("artifact_threshold: 0\n")  # every file external
    clf, _ = iris_classifier()
    with gitml.start_run() as run:
        info = gitml.sklearn.log_model(clf, "model")
    pkl = next(a for a in gitml.Client().list_artifacts(run.run_id) if a.path == "model/model.pkl")
    stored = repo / ".git" / "gitml" / "artifacts" / pkl.sha256[:2] / pkl.sha256[2:]
    assert stored.is_file()
    stored.chmod(0o644)
    stored.write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(gitml.Corrupt, match=r"model/model\.pkl"):
        gitml.pyfunc.load_model(info.model_uri)


def test_a_tampered_cache_is_fetched_again(repo: Path) -> None:
    clf, features = iris_classifier()
    with gitml.start_run():
        info = gitml.sklearn.log_model(clf, "model")
    gitml.pyfunc.load_model(info.model_uri)
    (cached,) = (repo / ".git" / "gitml" / "models-cache").iterdir()
    (cached / "model.pkl").write_bytes(pickle.dumps(_Boom()))
    loaded = gitml.pyfunc.load_model(info.model_uri)
    np.testing.assert_array_equal(loaded.predict(features), clf.predict(features))


def test_mlflow_loader_hooks(tmp_path: Path) -> None:
    """What ``mlflow.pyfunc.load_model`` calls for a gitml-saved model (loader_module)."""
    from gitml.models import pyfunc, sklearn

    clf, features = iris_classifier()
    gitml.sklearn.save_model(clf, tmp_path / "sk")
    predictor = sklearn._load_pyfunc(str(tmp_path / "sk" / "model.pkl"))
    np.testing.assert_array_equal(predictor.predict(features), clf.predict(features))
    gitml.pyfunc.save_model(
        tmp_path / "custom", AddOffset(), artifacts={"offset": _offset_file(tmp_path)}
    )
    custom = pyfunc._load_pyfunc(str(tmp_path / "custom"))
    np.testing.assert_array_equal(custom.predict(np.array([1.0]), None), np.array([11.0]))


@pytest.mark.parametrize("how", ["relative", "absolute", "symlink"])
def test_files_outside_the_model_directory_are_never_loaded(tmp_path: Path, how: str) -> None:
    model = tmp_path / "m"
    gitml.pyfunc.save_model(model, AddOffset(), artifacts={"offset": _offset_file(tmp_path)})
    target = leads_outside(tmp_path, how, model, "python_model.pkl")
    edit_flavor(model, "python_function", python_model=target)
    with pytest.raises(gitml.InvalidInput, match=f"model {model}: '.*' leads outside {model}"):
        gitml.pyfunc.load_model(model)


def test_a_context_artifact_outside_the_model_directory_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "m"
    gitml.pyfunc.save_model(model, AddOffset(), artifacts={"offset": _offset_file(tmp_path)})
    outside = {"path": "../offset.txt", "uri": "offset.txt"}
    edit_flavor(model, "python_function", artifacts={"offset": outside})
    with pytest.raises(gitml.InvalidInput, match=r"'\.\./offset\.txt' leads outside"):
        gitml.pyfunc.load_model(model)
