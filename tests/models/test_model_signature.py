"""Signature inference (MLflow's JSON shapes) and enforcement errors that name the fault."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

import gitml
from gitml.models.signature import (
    ColSpec,
    ModelSignature,
    Schema,
    TensorSpec,
    enforce,
    infer_signature,
)


def test_dataframe_columns_use_mlflow_type_names() -> None:
    frame = pd.DataFrame(
        {
            "d": [1.0],
            "f": np.array([1.0], dtype=np.float32),
            "l": [1],
            "i": np.array([1], dtype=np.int32),
            "s": ["a"],
            "b": [True],
            "y": [b"x"],
            "t": pd.to_datetime(["2024-01-01"]),
        }
    )
    inputs = infer_signature(frame).inputs
    assert inputs is not None
    assert json.loads(inputs.to_json()) == [
        {"type": t, "name": n, "required": True}
        for n, t in [
            ("d", "double"),
            ("f", "float"),
            ("l", "long"),
            ("i", "integer"),
            ("s", "string"),
            ("b", "boolean"),
            ("y", "binary"),
            ("t", "datetime"),
        ]
    ]


def test_numpy_is_a_tensor_spec_with_a_free_batch_axis() -> None:
    signature = infer_signature(np.zeros((5, 4)), np.zeros(5, dtype=np.int64))
    assert signature.to_dict() == {
        "inputs": '[{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 4]}}]',
        "outputs": '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]',
        "params": None,
    }


def test_dicts_lists_and_params() -> None:
    assert infer_signature({"a": 1, "b": "x"}).inputs == Schema(
        [ColSpec("long", "a"), ColSpec("string", "b")]
    )
    assert infer_signature(["x", "y"]).inputs == Schema([ColSpec("string")])
    assert infer_signature([{"a": 1.5}, {"a": 2.5}]).inputs == Schema([ColSpec("double", "a")])
    named = infer_signature({"img": np.zeros((2, 3), dtype=np.float32)}).inputs
    assert named == Schema([TensorSpec("float32", (-1, 3), "img")])
    params = infer_signature(np.zeros((1, 2)), params={"k": 3, "mode": "fast"}).params
    assert params is not None
    assert json.loads(params.to_json()) == [
        {"name": "k", "type": "long", "default": 3, "shape": None},
        {"name": "mode", "type": "string", "default": "fast", "shape": None},
    ]


def test_signature_round_trips_through_its_mlmodel_form() -> None:
    signature = infer_signature(
        pd.DataFrame({"x": [1.0], "y": ["a"]}), np.zeros(1), params={"k": 1}
    )
    assert ModelSignature.from_dict(signature.to_dict()) == signature


SCHEMA = Schema([ColSpec("double", "x"), ColSpec("long", "n"), ColSpec("string", "s")])


def test_enforce_converts_orders_and_ignores_extra_columns() -> None:
    frame = pd.DataFrame({"extra": [0], "s": ["a"], "n": np.array([1], np.int32), "x": [2]})
    out = enforce(SCHEMA, frame)
    assert list(out.columns) == ["x", "n", "s"]
    assert [str(t) for t in out.dtypes[:2]] == ["float64", "int64"]
    assert out["s"].tolist() == ["a"]
    records = enforce(SCHEMA, [{"x": 1.0, "n": 2, "s": "b"}])
    assert records.to_dict("records") == [{"x": 1.0, "n": 2, "s": "b"}]
    by_position = enforce(SCHEMA, [[1.0, 2, "c"]])
    assert list(by_position.columns) == ["x", "n", "s"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (pd.DataFrame({"x": [1.0], "s": ["a"]}), r"missing columns \['n'\]"),
        (pd.DataFrame({"x": ["no"], "n": [1], "s": ["a"]}), "column 'x': expected double"),
        (pd.DataFrame({"x": [1.0], "n": [1.5], "s": ["a"]}), "column 'n': expected long"),
        (pd.DataFrame({"x": [1.0], "n": [1], "s": [3]}), "column 's': expected string"),
        ([[1.0, 2]], "2 columns by position; the model expects 3"),
    ],
)
def test_enforce_names_the_wrong_column(data: Any, message: str) -> None:
    with pytest.raises(gitml.InvalidInput, match=message):
        enforce(SCHEMA, data)


def test_tensor_enforcement() -> None:
    schema = Schema([TensorSpec("float64", (-1, 4))])
    assert enforce(schema, [[1, 2, 3, 4]]).dtype == np.float64
    assert enforce(schema, np.zeros(4)).shape == (1, 4)
    with pytest.raises(gitml.InvalidInput, match=r"expected shape \[-1, 4\], got \[2, 3\]"):
        enforce(schema, np.zeros((2, 3)))
    with pytest.raises(gitml.InvalidInput, match="expected dtype float64"):
        enforce(schema, np.array([["a", "b", "c", "d"]]))
    named = Schema([TensorSpec("float32", (-1,), "a"), TensorSpec("float32", (-1,), "b")])
    with pytest.raises(gitml.InvalidInput, match=r"missing tensors \['b'\]"):
        enforce(named, {"a": np.zeros(2, np.float32)})


def test_invalid_specs() -> None:
    with pytest.raises(gitml.InvalidInput, match="not one of MLflow's"):
        ColSpec("decimal", "x")
    with pytest.raises(gitml.InvalidInput, match="not both"):
        Schema([ColSpec("double", "x"), TensorSpec("float64", (-1,), "y")])
    with pytest.raises(gitml.InvalidInput, match="not JSON"):
        Schema.from_json("[{")
