"""gitml's scoring server answers each request as MLflow's own scoring server does.

The same scikit-learn model (iris, saved with a DataFrame input example, so
with a column signature) is saved by MLflow and served by
``mlflow.pyfunc.scoring_server`` in a child process, and saved by gitml and
served by ``gitml.serving.scoring_app`` here. Every body of the table goes to
both; the status codes and error codes must be the same, and no body may make
either answer 500.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient

import gitml.pyfunc
import gitml.sklearn
from gitml.serving.scoring_app import create_app
from testing.mlflow_ref import mlflow_answer
from testing.models import iris_classifier

JSON = "application/json"
COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
ROW = [5.1, 3.5, 1.4, 0.2]
RECORD = dict(zip(COLUMNS, ROW, strict=True))


def split(*rows: list[Any]) -> str:
    return json.dumps({"dataframe_split": {"columns": COLUMNS, "data": list(rows)}})


# (what the body is, the body, its Content-Type)
BODIES: list[tuple[str, str, str]] = [
    ("dataframe_split", split(ROW, ROW), JSON),
    ("dataframe_records", json.dumps({"dataframe_records": [RECORD, RECORD]}), JSON),
    ("instances as records", json.dumps({"instances": [RECORD, RECORD]}), JSON),
    ("inputs as columns", json.dumps({"inputs": {k: [v, v] for k, v in RECORD.items()}}), JSON),
    ("csv", ",".join(COLUMNS) + "\n" + ",".join(map(str, ROW)) + "\n", "text/csv"),
    ("NaN literal", split([float("nan"), *ROW[1:]]), JSON),
    ("Infinity literal", split([float("inf"), *ROW[1:]]), JSON),
    ("a number out of range", split(ROW).replace("5.1", "1e999"), JSON),
    ("an integer out of range", split(ROW).replace("5.1", "1" + "0" * 30), JSON),
    ("a scalar under inputs", json.dumps({"inputs": 5}), JSON),
    ("a scalar under instances", json.dumps({"instances": 5}), JSON),
    ("a string under dataframe_records", json.dumps({"dataframe_records": "x"}), JSON),
    ("inputs as records", json.dumps({"inputs": [RECORD, RECORD]}), JSON),
    ("inputs as lists of lists", json.dumps({"inputs": [ROW, ROW]}), JSON),
    ("instances as lists of lists", json.dumps({"instances": [ROW, ROW]}), JSON),
    ("instances as a single object", json.dumps({"instances": RECORD}), JSON),
    ("inputs as a single object", json.dumps({"inputs": RECORD}), JSON),
    ("ragged inputs", json.dumps({"inputs": [[1, 2], [3]]}), JSON),
    ("a missing column", json.dumps({"dataframe_records": [dict(list(RECORD.items())[1:])]}), JSON),
    ("a string for a number", split(["x", *ROW[1:]]), JSON),
    ("a number as text", split([str(ROW[0]), *ROW[1:]]), JSON),
    ("csv with text for a number", ",".join(COLUMNS) + "\nx,3.5,1.4,0.2\n", "text/csv"),
    ("two input keys", json.dumps({"inputs": [ROW], "instances": [ROW]}), JSON),
    ("no input key", json.dumps({"data": [ROW]}), JSON),
    ("not JSON", "{", JSON),
    ("a JSON list", json.dumps([ROW]), JSON),
    ("params not an object", json.dumps({"inputs": {"a": [1]}, "params": [1]}), JSON),
]

MLFLOW_SERVER = """
import json, sys
import mlflow.pyfunc, mlflow.sklearn
from mlflow.pyfunc import scoring_server
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from starlette.testclient import TestClient

features, labels = load_iris(return_X_y=True, as_frame=True)
model = LogisticRegression(max_iter=1000).fit(features, labels)
path = sys.argv[1] + "/mlflow-model"
# Requirements given: MLflow would otherwise infer them by loading the model in a child.
# cloudpickle: skops (the default) scans all of scikit-learn first, importing torch (seconds).
mlflow.sklearn.save_model(
    model,
    path,
    input_example=features.head(3),
    pip_requirements=["scikit-learn"],
    serialization_format="cloudpickle",
)
client = TestClient(scoring_server.init(mlflow.pyfunc.load_model(path)))
answers = []
for body, content_type in json.load(open(sys.argv[2])):
    response = client.post(
        "/invocations", content=body.encode(), headers={"Content-Type": content_type}
    )
    code = None if response.status_code == 200 else response.json().get("error_code")
    answers.append([response.status_code, code])
print(json.dumps(answers))
"""


def answer(client: TestClient, body: str, content_type: str) -> tuple[int, str | None]:
    response = client.post(
        "/invocations", content=body.encode(), headers={"Content-Type": content_type}
    )
    code = None if response.status_code == 200 else response.json().get("error_code")
    return response.status_code, code


@pytest.fixture(scope="module")
def mlflow_answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str | None]]:
    work = tmp_path_factory.mktemp("mlflow-scoring")
    table = work / "bodies.json"
    table.write_text(json.dumps([[body, content_type] for _, body, content_type in BODIES]))
    answers = mlflow_answer(MLFLOW_SERVER, work, str(work), str(table))
    return {
        what: (status, code) for (what, _, _), (status, code) in zip(BODIES, answers, strict=True)
    }


@pytest.fixture(scope="module")
def gitml_client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    model, features = iris_classifier()
    path = tmp_path_factory.mktemp("gitml-scoring") / "model"
    gitml.sklearn.save_model(model, path, input_example=features.head(3))
    return TestClient(create_app(gitml.pyfunc.load_model(path)))


@pytest.mark.slow
@pytest.mark.parametrize(("what", "body", "content_type"), BODIES, ids=[b[0] for b in BODIES])
def test_gitml_answers_as_mlflow_does(
    what: str,
    body: str,
    content_type: str,
    mlflow_answers: dict[str, tuple[int, str | None]],
    gitml_client: TestClient,
) -> None:
    got = answer(gitml_client, body, content_type)
    assert got[0] != 500, got
    assert got == mlflow_answers[what]
