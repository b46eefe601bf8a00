"""schemas/MLmodel.schema.json and gitml.format.mlmodel.MLmodel agree."""

from __future__ import annotations

from typing import Any

import pytest

from gitml.errors import InvalidRecord
from gitml.format import records, schemas
from gitml.format.mlmodel import MLmodel, SignatureRecord

FLAVORS = {
    "python_function": {
        "loader_module": "mlflow.sklearn",
        "model_path": "model.pkl",
        "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
        "python_version": "3.11.7",
    },
    "sklearn": {
        "pickled_model": "model.pkl",
        "serialization_format": "cloudpickle",
        "sklearn_version": "1.5.0",
        "code": None,
    },
}
SIGNATURE = {
    "inputs": '[{"type": "double", "name": "x", "required": true}]',
    "outputs": '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]',
    "params": None,
}
MINIMAL: dict[str, Any] = {"flavors": FLAVORS}
COMPLETE: dict[str, Any] = {
    "artifact_path": "model",
    "flavors": FLAVORS,
    "mlflow_version": "2.17.0",
    "model_size_bytes": 1519,
    "model_uuid": "0123456789abcdef0123456789abcdef",
    "run_id": "fedcba9876543210fedcba9876543210",
    "saved_input_example_info": {
        "artifact_path": "input_example.json",
        "type": "dataframe",
        "pandas_orient": "split",
    },
    "signature": SIGNATURE,
    "utc_time_created": "2024-05-01 12:00:00.123456",
}


# MLflow 2.x/3.x name the example as a scoring request too (serving_input_example.json).
SERVING_INFO: dict[str, Any] = {
    **COMPLETE["saved_input_example_info"],
    "serving_input_path": "serving_input_example.json",
}


def mlmodel(**changes: Any) -> dict[str, Any]:
    return {**COMPLETE, **changes}


SAMPLES: list[tuple[str, Any, bool]] = [
    ("minimal", MINIMAL, True),
    ("complete", COMPLETE, True),
    ("no fraction in time", mlmodel(utc_time_created="2024-05-01 12:00:00"), True),
    ("a newer MLflow's extra key", mlmodel(prompts=["p"]), True),
    ("null signature parts", mlmodel(signature={"inputs": None}), True),
    ("metadata", mlmodel(metadata={"owner": "ml"}), True),
    ("no flavors", {"run_id": "x"}, False),
    ("empty flavors", mlmodel(flavors={}), False),
    ("flavor not a mapping", mlmodel(flavors={"sklearn": "model.pkl"}), False),
    ("signature inputs as a list", mlmodel(signature={"inputs": [{"type": "double"}]}), False),
    ("unknown signature key", mlmodel(signature={**SIGNATURE, "extra": "x"}), False),
    ("ISO time", mlmodel(utc_time_created="2024-05-01T12:00:00Z"), False),
    ("time newline", mlmodel(utc_time_created="2024-05-01 12:00:00\n"), False),
    ("uuid with dashes", mlmodel(model_uuid="01234567-89ab-cdef-0123-456789abcdef"), False),
    ("MLflow 3 model id", mlmodel(model_uuid="m-0123456789abcdef0123456789abcdef"), True),
    ("other prefix", mlmodel(model_uuid="x-0123456789abcdef0123456789abcdef"), False),
    ("negative size", mlmodel(model_size_bytes=-1), False),
    ("string size", mlmodel(model_size_bytes="10"), False),
    ("int run id", mlmodel(run_id=5), False),
    ("example info a string", mlmodel(saved_input_example_info="input_example.json"), False),
    ("serving input path", mlmodel(saved_input_example_info=SERVING_INFO), True),
    ("example info of a newer MLflow", mlmodel(saved_input_example_info={"x": [1]}), True),
    (
        "serving input path not a string",
        mlmodel(saved_input_example_info={**SERVING_INFO, "serving_input_path": 1}),
        False,
    ),
    (
        "example path null",
        mlmodel(saved_input_example_info={"artifact_path": None}),
        False,
    ),
    ("top level list", [COMPLETE], False),
]


def _schema_accepts(document: Any) -> bool:
    return not schemas.errors("MLmodel", document, where="m", path="MLmodel")


def _model_accepts(document: Any) -> bool:
    try:
        records.validate(MLmodel, document, where="m", path="MLmodel")
    except InvalidRecord:
        return False
    return True


@pytest.mark.parametrize(
    ("document", "valid"), [pytest.param(d, v, id=label) for label, d, v in SAMPLES]
)
def test_schema_and_model_agree(document: Any, valid: bool) -> None:
    assert (_schema_accepts(document), _model_accepts(document)) == (valid, valid)


@pytest.mark.parametrize("document", [pytest.param(d, id=label) for label, d, v in SAMPLES if v])
def test_what_the_model_writes_reads_back(document: Any) -> None:
    record = records.validate(MLmodel, document, where="", path="MLmodel")
    data = record.to_yaml()
    assert schemas.check_bytes("MLmodel", data, where="", path="MLmodel") == []
    assert records.parse(MLmodel, data, where="", path="MLmodel").to_yaml() == data


def test_schema_properties_are_the_model_fields() -> None:
    schema = schemas.load("MLmodel")
    assert list(schema["properties"]) == list(MLmodel.model_fields)
    required = {n for n, f in MLmodel.model_fields.items() if f.is_required()}
    assert set(schema["required"]) == required
    signature = schema["properties"]["signature"]
    assert list(signature["properties"]) == list(SignatureRecord.model_fields)
