"""Models cross between gitml and the real MLflow, both ways.

MLflow (``mlflow-skinny``, pinned in the ``dev`` extra) runs only in child
processes: its import-time warnings, telemetry and global state stay out of
pytest, which turns warnings into errors. Each child gets its own ``HOME`` and
a ``file:`` tracking store in a temporary directory, and prints one JSON line
that the tests compare with what gitml reads and predicts.

- MLflow -> gitml: ``mlflow.sklearn.save_model`` (MLflow's default skops
  format, and cloudpickle) and ``mlflow.sklearn.log_model`` write models that
  ``gitml.pyfunc`` / ``gitml.sklearn`` load and score identically; their
  ``MLmodel`` parses as gitml's record and JSON schema; gitml reads the
  signature, the input example and ``serving_input_example.json``.
- gitml -> MLflow: ``gitml.sklearn.save_model`` / ``log_model`` and a custom
  ``gitml.pyfunc`` model load with ``mlflow.pyfunc.load_model`` and
  ``mlflow.sklearn.load_model`` and predict the same values; MLflow reads
  gitml's signature, run id and input example, and accepts the example as a
  serving input (``validate_serving_input``).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gitml
import gitml.pyfunc
import gitml.sklearn
from gitml.format import records, schemas
from gitml.format.mlmodel import MLMODEL, MLmodel
from gitml.models import uri
from gitml.models.mlmodel import Model
from gitml.models.signature import infer_signature
from gitml.serving import scoring
from gitml.tracking import fluent
from testing.git import init_repo
from testing.mlflow_ref import mlflow_answer
from testing.models import AddOffset, iris, iris_classifier
from testing.reconcile import pinned_git

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("mlflow") is None,
        reason="mlflow is not installed (it is in the dev extra: pip install -e '.[dev]')",
    ),
    pytest.mark.slow,  # each child imports MLflow, scikit-learn and skops: ~5-10 s
    # The first test's set-up saves gitml's models and runs the MLflow child both ways.
    pytest.mark.timeout(900),
]

# MLflow infers a model's pip requirements by loading it in yet another child
# process (~10 s); naming them skips that and changes nothing else in the files.
MLFLOW_SAVES = """
import json, sys
from pathlib import Path

import mlflow
import mlflow.artifacts
import mlflow.sklearn
from mlflow.models import infer_signature

from testing.models import iris_classifier

out = Path(sys.argv[1])
model, x = iris_classifier()
expected = model.predict(x)
signature = infer_signature(x, expected)
example = x.head(3)
quick = {"pip_requirements": ["scikit-learn"]}
mlflow.sklearn.save_model(
    model, out / "skops", signature=signature, input_example=example, **quick
)
mlflow.sklearn.save_model(
    model, out / "cloudpickle", serialization_format="cloudpickle", signature=signature, **quick
)
with mlflow.start_run() as run:
    info = mlflow.sklearn.log_model(
        model, name="model", signature=signature, input_example=example, **quick
    )
logged = mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(out / "logged"))
saved = {
    "mlflow_version": mlflow.__version__,
    "expected": expected.tolist(),
    "signature": signature.to_dict(),
    "models": {
        "skops": str(out / "skops"),
        "cloudpickle": str(out / "cloudpickle"),
        "logged": logged,
    },
    "run_id": run.info.run_id,
}
"""

MLFLOW_LOADS = """
import json, sys

import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
from mlflow.models import Model, infer_signature, validate_serving_input
from mlflow.models.utils import convert_input_example_to_serving_input

from testing.models import iris

x, _ = iris()


def plain(value):
    return np.asarray(value).tolist()


report = {"mlflow_version": mlflow.__version__, "models": {}}
for name, spec in json.loads(sys.argv[2]).items():
    path, params = spec["path"], spec["params"]
    meta = Model.load(path)
    pyfunc = mlflow.pyfunc.load_model(path)
    seen = {
        "flavors": sorted(meta.flavors),
        "run_id": meta.run_id,
        "artifact_path": meta.artifact_path,
        "model_uuid": meta.model_uuid,
        "signature": meta.signature.to_dict() if meta.signature else None,
        "pyfunc": plain(pyfunc.predict(x, params=params)),
    }
    if "sklearn" in meta.flavors:
        estimator = mlflow.sklearn.load_model(path)
        seen["sklearn"] = plain(estimator.predict(x))
        seen["inferred"] = infer_signature(x, estimator.predict(x)).to_dict()
    example = meta.load_input_example(path)
    if example is not None:
        seen["example"] = example.to_dict(orient="split")
        # serving_input_example.json when gitml writes one, else MLflow's own conversion.
        serving = meta.get_serving_input(path) or convert_input_example_to_serving_input(example)
        seen["serving"] = plain(validate_serving_input(path, serving))
    report["models"][name] = seen
"""

# One child for both ways: each child's imports (MLflow, scikit-learn, skops's scan of
# scikit-learn, which imports torch) take longer than everything it then does.
MLFLOW_BOTH_WAYS = (
    MLFLOW_SAVES + MLFLOW_LOADS + 'print(json.dumps({"saved": saved, "loaded": report}))\n'
)


def _same_signature(ours: Mapping[str, Any] | None, theirs: Mapping[str, Any] | None) -> None:
    """Both signatures (MLmodel's three JSON strings) describe the same specs."""
    assert ours is not None and theirs is not None
    for part in ("inputs", "outputs", "params"):
        mine, other = ours.get(part), theirs.get(part)
        assert (json.loads(mine) if mine else None) == (json.loads(other) if other else None), part


# -- MLflow -> gitml ---------------------------------------------------------------------

# "logged": MLflow 3's log_model, whose model_uuid is its model id, "m-<32 hex>".
SAVED_BY_MLFLOW = ["skops", "cloudpickle", "logged"]


@pytest.fixture(scope="module")
def both_ways(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Models gitml saved (``gitml``, a ``GitmlSaved``), then one MLflow child that saves
    its own (``saved``) and loads gitml's (``loaded``)."""
    base = tmp_path_factory.mktemp("both-ways")
    with pinned_git(tmp_path_factory.mktemp("home")) as patch:
        repo = init_repo(base / "work")
        patch.chdir(repo)
        ours = save_gitml_models(base)
        fluent.set_tracking_uri(None)
    spec = {name: {"path": str(p), "params": None} for name, p in ours.paths.items()}
    spec["custom"] = {"path": str(ours.custom), "params": {"scale": 2.0}}
    answer = mlflow_answer(
        MLFLOW_BOTH_WAYS, base / "mlflow", str(base / "models"), json.dumps(spec), timeout=600
    )
    return {**answer, "gitml": ours}


@pytest.fixture(scope="module")
def saved_by_mlflow(both_ways: dict[str, Any]) -> dict[str, Any]:
    saved: dict[str, Any] = both_ways["saved"]
    return saved


@pytest.mark.parametrize("name", SAVED_BY_MLFLOW)
def test_gitml_loads_and_scores_a_model_mlflow_saved(
    saved_by_mlflow: dict[str, Any], name: str
) -> None:
    path = Path(saved_by_mlflow["models"][name])
    x, _ = iris()
    expected = saved_by_mlflow["expected"]
    loaded = gitml.pyfunc.load_model(path)
    assert np.asarray(loaded.predict(x)).tolist() == expected
    assert gitml.sklearn.load_model(path).predict(x).tolist() == expected
    # gitml reads MLflow's signature as the one MLflow inferred.
    assert loaded.metadata.signature is not None
    _same_signature(loaded.metadata.signature.to_dict(), saved_by_mlflow["signature"])
    inputs = loaded.metadata.get_input_schema()
    assert inputs is not None and inputs.input_names() == list(x.columns)
    assert {s.type for s in inputs.inputs} == {"double"}
    if name == "logged":
        assert loaded.metadata.run_id == saved_by_mlflow["run_id"]


@pytest.mark.parametrize("name", SAVED_BY_MLFLOW)
def test_mlflows_mlmodel_parses_as_gitmls_record_and_schema(
    saved_by_mlflow: dict[str, Any], name: str
) -> None:
    path = Path(saved_by_mlflow["models"][name])
    data = (path / MLMODEL).read_bytes()
    assert schemas.check_bytes("MLmodel", data, where=str(path), path=MLMODEL) == []
    record = records.parse(MLmodel, data, where=str(path), path=MLMODEL)
    assert record.mlflow_version == saved_by_mlflow["mlflow_version"]
    assert set(record.flavors) == {"python_function", "sklearn"}
    assert record.flavors["python_function"]["loader_module"] == "mlflow.sklearn"
    assert record.model_uuid is not None and record.utc_time_created is not None


def test_gitml_reads_mlflows_input_example_and_serving_input(
    saved_by_mlflow: dict[str, Any],
) -> None:
    path = Path(saved_by_mlflow["models"]["skops"])
    x, _ = iris()
    model = Model.load(path)
    assert model.load_input_example().equals(x.head(3))
    # MLflow writes the example as a scoring request too: gitml's scoring accepts it.
    info = model.saved_input_example_info
    assert info is not None
    body = (path / info["serving_input_path"]).read_bytes()
    request = scoring.parse_request(body, "application/json")
    predictions = scoring.predict(gitml.pyfunc.load_model(path), request)
    assert np.asarray(predictions).tolist() == saved_by_mlflow["expected"][:3]


# -- gitml -> MLflow ---------------------------------------------------------------------


@dataclass
class GitmlSaved:
    """What ``save_gitml_models`` saved: the sklearn models by name, the custom model,
    the run that logged one, and the classifier's predictions on ``x``."""

    paths: dict[str, Path]
    custom: Path
    run_id: str
    x: Any
    expected: list[int]


def save_gitml_models(base: Path) -> GitmlSaved:
    """gitml's sklearn model saved with pickle and skops and logged in a run, and a custom
    pyfunc model, under ``base/gitml-models``; the current directory is a repository."""
    clf, x = iris_classifier()
    expected = clf.predict(x).tolist()
    models = base / "gitml-models"
    gitml.sklearn.save_model(clf, models / "pickle", input_example=x.head(3))
    gitml.sklearn.save_model(
        clf,
        models / "skops",
        serialization_format="skops",
        signature=infer_signature(x, clf.predict(x)),
    )
    with gitml.start_run() as active:
        info = gitml.sklearn.log_model(clf, "model", input_example=x.head(3))
    logged = uri.resolve(info.model_uri)  # the run's artifacts, fetched
    offset = base / "offset.txt"
    offset.write_text("0.5")
    gitml.pyfunc.save_model(
        models / "custom",
        AddOffset(),
        artifacts={"offset": offset},
        signature=infer_signature(x, x, params={"scale": 1.0}),
        input_example=x.head(3),
    )
    paths = {"pickle": models / "pickle", "skops": models / "skops", "logged": logged}
    return GitmlSaved(paths, models / "custom", active.run_id, x, expected)


def test_mlflow_loads_and_scores_models_gitml_saved(both_ways: dict[str, Any]) -> None:
    saved: GitmlSaved = both_ways["gitml"]
    x, expected = saved.x, saved.expected
    seen = both_ways["loaded"]["models"]
    for name, path in saved.paths.items():
        theirs = seen[name]
        assert theirs["flavors"] == ["python_function", "sklearn"], name
        assert theirs["pyfunc"] == expected, name
        assert theirs["sklearn"] == expected, name
        ours = Model.load(path)
        assert ours.signature is not None
        _same_signature(theirs["signature"], ours.signature.to_dict())
        # gitml's signature is the one MLflow infers from the same data.
        _same_signature(theirs["signature"], theirs["inferred"])
        assert theirs["model_uuid"] == ours.model_uuid, name
    for name in ("pickle", "logged"):
        assert seen[name]["example"] == x.head(3).to_dict(orient="split"), name
        assert seen[name]["serving"] == expected[:3], name
    assert "example" not in seen["skops"]
    assert seen["logged"]["run_id"] == saved.run_id
    assert seen["logged"]["artifact_path"] == "model"
    assert seen["pickle"]["run_id"] is None

    custom = seen["custom"]
    assert custom["flavors"] == ["python_function"]
    assert custom["pyfunc"] == ((x + 0.5) * 2.0).to_numpy().tolist()  # MLflow passed params
    signature = Model.load(saved.custom).signature
    assert signature is not None
    _same_signature(custom["signature"], signature.to_dict())
    assert custom["example"] == x.head(3).to_dict(orient="split")
    assert custom["serving"] == (x.head(3) + 0.5).to_numpy().tolist()
