"""The scoring core: MLflow's request shapes in, ``{"predictions": ...}`` out."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from gitml.errors import GitmlError
from gitml.serving import scoring
from testing.serving import StandInModel


def echo(data: Any) -> Any:
    return data


def parse(body: Any, content_type: str = "application/json") -> scoring.ScoringInput:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return scoring.parse_request(raw, content_type)


def test_dataframe_split_is_a_frame_with_columns_and_index() -> None:
    parsed = parse(
        {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2.5], [3, 4.5]], "index": [7, 8]}}
    )
    expected = pd.DataFrame({"a": [1, 3], "b": [2.5, 4.5]}, index=[7, 8])
    pd.testing.assert_frame_equal(parsed.data, expected)
    assert parsed.params is None


def test_dataframe_records_is_a_frame() -> None:
    parsed = parse({"dataframe_records": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]})
    pd.testing.assert_frame_equal(parsed.data, pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}))


def test_inputs_list_is_an_array_and_params_pass_through() -> None:
    parsed = parse({"inputs": [[1.0, 2.0], [3.0, 4.0]], "params": {"k": 3}})
    np.testing.assert_array_equal(parsed.data, np.array([[1.0, 2.0], [3.0, 4.0]]))
    assert parsed.params == {"k": 3}


def test_named_inputs_are_a_dict_of_arrays() -> None:
    parsed = parse({"inputs": {"x": [1, 2], "y": [[0.5], [1.5]]}})
    assert set(parsed.data) == {"x", "y"}
    np.testing.assert_array_equal(parsed.data["y"], np.array([[0.5], [1.5]]))


def test_instances_records_become_columns() -> None:
    parsed = parse({"instances": [{"a": 1, "b": 2}, {"a": 3, "b": 4}]})
    np.testing.assert_array_equal(parsed.data["a"], np.array([1, 3]))
    np.testing.assert_array_equal(parsed.data["b"], np.array([2, 4]))


def test_instances_list_is_an_array() -> None:
    np.testing.assert_array_equal(parse({"instances": [1, 2, 3]}).data, np.array([1, 2, 3]))


def test_csv_is_a_frame() -> None:
    parsed = parse(b"a,b\n1,2\n3,4\n", "text/csv; charset=utf-8")
    pd.testing.assert_frame_equal(parsed.data, pd.DataFrame({"a": [1, 3], "b": [2, 4]}))


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "got a list"),
        (json.dumps({"inputs": [1], "instances": [1]}).encode(), "found instances, inputs"),
        (json.dumps({"data": [1]}).encode(), "only data"),
        (json.dumps({"dataframe_split": [[1]]}).encode(), "dataframe_split"),
        (json.dumps({"dataframe_records": {"a": 1}}).encode(), "list of objects"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_bad_json_bodies_are_400_naming_the_problem(body: bytes, words: str) -> None:
    with pytest.raises(scoring.BadRequest) as caught:
        scoring.parse_request(body, "application/json")
    assert caught.value.status == 400
    assert words in caught.value.message
    assert json.loads(caught.value.body()) == {
        "error_code": "BAD_REQUEST",
        "message": caught.value.message,
    }


def test_params_that_are_no_object_are_an_invalid_parameter_as_in_mlflow() -> None:
    body = json.dumps({"inputs": [1], "params": [1]}).encode()
    with pytest.raises(scoring.SchemaViolation, match="'params' must be a JSON object, got list"):
        scoring.parse_request(body, "application/json")


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/xml", "application/json; charset=latin-1", "text/csv; x=1"],
)
def test_other_content_types_are_415(content_type: str | None) -> None:
    with pytest.raises(scoring.UnsupportedContentType) as caught:
        scoring.parse_request(b"{}", content_type)
    assert caught.value.status == 415


def test_oversized_body_is_413() -> None:
    model = StandInModel(echo)
    with pytest.raises(scoring.RequestTooLarge) as caught:
        scoring.score(model, b"x" * 101, "application/json", max_body_bytes=100)
    assert caught.value.status == 413
    assert "101 bytes" in caught.value.message


def test_schema_violation_and_a_model_exception_are_400() -> None:
    model = StandInModel(echo, columns=["a", "b"])
    with pytest.raises(scoring.SchemaViolation) as caught:
        scoring.score(model, b'{"dataframe_records": [{"a": 1}]}', "application/json")
    assert caught.value.status == 400
    assert "'b'" in caught.value.message
    with pytest.raises(scoring.UnscorableInput) as failure:
        scoring.score(model, b'{"inputs": [1], "params": {"fail": true}}', "application/json")
    assert (failure.value.status, failure.value.error_code) == (400, "BAD_REQUEST")
    assert "the model broke" in failure.value.message
    assert isinstance(failure.value, GitmlError)


def test_predictions_are_json_as_mlflow_writes_them() -> None:
    assert scoring.jsonable(np.array([1, 2])) == [1, 2]
    assert scoring.jsonable(np.float32(0.5)) == 0.5
    assert scoring.jsonable(pd.DataFrame({"a": [1], "b": ["x"]})) == [{"a": 1, "b": "x"}]
    assert scoring.jsonable(pd.Series([1, 2], name="y")) == [{"y": 1}, {"y": 2}]
    assert scoring.jsonable({"p": np.array([[0.1, 0.9]])}) == {"p": [[0.1, 0.9]]}
    body = scoring.score(StandInModel(lambda d: d["a"] * 2), b"a\n1\n2\n", "text/csv")
    assert json.loads(body) == {"predictions": [{"a": 2}, {"a": 4}]}


def test_unserialisable_predictions_are_a_model_failure() -> None:
    with pytest.raises(scoring.ModelFailure, match="object"):
        scoring.score(StandInModel(lambda d: object()), b'{"inputs": [1]}', "application/json")


def test_nan_and_infinity_in_the_body_are_read_as_mlflow_reads_them() -> None:
    parsed = parse(b'{"inputs": [[NaN, Infinity, 1.0]]}')
    assert np.isnan(parsed.data[0][0])
    assert parsed.data[0][1] == float("inf")
