"""Input rules of gitml.tracking.validation: every rejection names the key it is about."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

import gitml
from gitml.errors import GitmlError, InvalidInput
from gitml.format.records import Run
from gitml.server.tracking_app import PREFIX, ServerSettings, create_app
from gitml.tracking import validation
from gitml.tracking.validation import (
    MAX_ENTITIES_PER_BATCH,
    MAX_KEY_LENGTH,
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_VALUE_LENGTH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MAX_TAG_VALUE_LENGTH,
)


def test_the_limits_are_mlflows() -> None:
    assert (MAX_KEY_LENGTH, MAX_PARAM_VALUE_LENGTH, MAX_TAG_VALUE_LENGTH) == (250, 6000, 8000)
    assert (MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH, MAX_ENTITIES_PER_BATCH) == (
        1000,
        100,
        1000,
    )


# -- keys ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "loss",
        "train/loss",
        "a/b/c",
        "learning_rate",
        "val-acc",
        "epoch 1",
        "ns:metric",
        "v1.2",
        "a..b",
        "a/b..",
        "réseau",
        "x" * MAX_KEY_LENGTH,
    ],
)
def test_valid_keys(name: str) -> None:
    assert validation.key("metric", name) == name


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("tab\tkey", "may only contain"),
        ("new\nline", "may only contain"),
        ("trailing\n", "may only contain"),
        ("trailing\r", "may only contain"),
        ("dollar$", "may only contain"),
        ("pct%2F", "may only contain"),
        ("back\\slash", "may only contain"),
        ("star*", "may only contain"),
        ("..", "plain relative path"),
        ("a/..", "plain relative path"),
        ("../a", "plain relative path"),
        ("a/../b", "plain relative path"),
        ("/abs", "plain relative path"),
        ("//abs", "plain relative path"),
        ("a//b", "plain relative path"),
        ("a/", "plain relative path"),
        (".", "plain relative path"),
        ("./a", "plain relative path"),
        ("a/.", "plain relative path"),
        ("a/./b", "plain relative path"),
        ("x" * (MAX_KEY_LENGTH + 1), "the limit is 250"),
    ],
)
@pytest.mark.parametrize("kind", ["metric", "param", "tag"])
def test_invalid_keys_name_the_key_and_the_rule(kind: str, name: str, rule: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validation.key(kind, name)
    message = str(info.value)
    assert rule in message
    assert kind in message
    shown = name[:40] if len(name) > MAX_KEY_LENGTH else repr(name)
    assert shown in message


def test_an_empty_key_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="param key must not be empty"):
        validation.key("param", "")


@pytest.mark.parametrize("name", [None, 5, 1.5, b"loss", ["loss"], {"k": "v"}, ("a",)])
def test_a_key_that_is_not_a_string_is_invalid_input(name: Any) -> None:
    with pytest.raises(InvalidInput, match="metric key must be a string") as info:
        validation.key("metric", name)
    assert type(name).__name__ in str(info.value)


def test_a_rejected_key_stays_rejected_after_a_valid_one_was_cached() -> None:
    assert validation.key("metric", "cached/key") == "cached/key"
    assert validation.key("metric", "cached/key") == "cached/key"
    with pytest.raises(InvalidInput):
        validation.key("metric", "cached//key")


# -- values ----------------------------------------------------------------------


def test_param_values_up_to_6000_characters() -> None:
    assert validation.param_value("lr", "v" * MAX_PARAM_VALUE_LENGTH) == "v" * 6000
    assert validation.param_value("lr", 0.01) == "0.01"
    assert validation.param_value("flag", None) == "None"
    with pytest.raises(InvalidInput, match="param 'lr' value is 6001 characters"):
        validation.param_value("lr", "v" * (MAX_PARAM_VALUE_LENGTH + 1))


def test_tag_values_up_to_8000_characters() -> None:
    assert validation.tag_value("note", "t" * MAX_TAG_VALUE_LENGTH) == "t" * 8000
    assert validation.tag_value("n", 3) == "3"
    with pytest.raises(InvalidInput, match="tag 'note' value is 8001 characters"):
        validation.tag_value("note", "t" * (MAX_TAG_VALUE_LENGTH + 1))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, 1.0),
        (0.25, 0.25),
        (-3, -3.0),
        (math.inf, math.inf),
        (-math.inf, -math.inf),
        (np.float32(0.5), 0.5),
        (np.int64(7), 7.0),
        (Fraction(1, 4), 0.25),
    ],
)
def test_metric_values_are_real_numbers(value: Any, expected: float) -> None:
    got = validation.metric_value("loss", value)
    assert isinstance(got, float)
    assert got == expected


def test_nan_is_kept() -> None:
    assert math.isnan(validation.metric_value("loss", math.nan))
    assert math.isnan(validation.metric_value("loss", np.nan))


@pytest.mark.parametrize("value", ["0.5", None, b"1", [1.0], 1j, Decimal("0.5")])
def test_non_numbers_are_not_metric_values(value: Any) -> None:
    with pytest.raises(InvalidInput, match="metric 'loss' value must be a number"):
        validation.metric_value("loss", value)


@pytest.mark.parametrize(
    "value", [10**400, -(10**400), Fraction(10**400, 3)], ids=["10**400", "-10**400", "fraction"]
)
def test_metric_values_beyond_a_float_are_refused_in_one_line(value: Any) -> None:
    with pytest.raises(InvalidInput, match="metric 'loss' value is beyond a 64-bit float") as e:
        validation.metric_value("loss", value)
    assert "\n" not in str(e.value) and len(str(e.value)) < 100


@pytest.mark.parametrize("value", [0, 1, 10**12, np.int64(5), 2**63 - 1])
def test_valid_steps(value: Any) -> None:
    got = validation.step("loss", value)
    assert got == int(value) and type(got) is int


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        (-1, "must not be negative"),
        (-(2**63) - 1, "must not be negative"),
        (2**63, "is over the limit of 2\\*\\*63 - 1, got 9223372036854775808"),
        (np.uint64(2**63), "is over the limit"),
        pytest.param(
            10**5000, "is over the limit of 2\\*\\*63 - 1, got a 16610-bit", id="10**5000"
        ),
        (True, "must be an integer"),
        (False, "must be an integer"),
        (1.0, "must be an integer"),
        (1.5, "must be an integer"),
        ("1", "must be an integer"),
        (None, "must be an integer"),
    ],
)
def test_invalid_steps(value: Any, rule: str) -> None:
    with pytest.raises(InvalidInput, match=f"metric 'loss' step {rule}"):
        validation.step("loss", value)


def test_timestamps_are_non_negative_integer_milliseconds() -> None:
    assert validation.timestamp("loss", 1_700_000_000_000) == 1_700_000_000_000
    assert validation.timestamp("loss", 0) == 0
    for bad, rule in [
        (-1, "must not be negative"),
        (-(10**5000), "must not be negative, got a 16610-bit integer"),
        (2**63, "is over the limit"),
        (True, "must be an integer"),
        (1.7e12, "must be an integer"),
        ("1700000000000", "must be an integer"),
    ]:
        with pytest.raises(InvalidInput, match=f"metric 'loss' timestamp {rule}"):
            validation.timestamp("loss", bad)


def test_run_names() -> None:
    assert validation.run_name("baseline") == "baseline"
    assert validation.run_name("n" * 250) == "n" * 250
    for bad in ["", "   ", None, 5]:
        with pytest.raises(InvalidInput, match="run name must be a non-empty string"):
            validation.run_name(bad)
    with pytest.raises(InvalidInput, match="run name is 251 characters"):
        validation.run_name("n" * 251)
    with pytest.raises(InvalidInput, match="run name holds '\\\\udcff' at position 1"):
        validation.run_name("a\udcff")


def test_experiment_names() -> None:
    assert validation.experiment_name("churn ✓") == "churn ✓"
    assert validation.experiment_name("x" * 500) == "x" * 500
    for bad, rule in [
        ("", "must be a non-empty string"),
        (None, "must be a non-empty string"),
        ("x" * 501, "is 501 characters; the limit is 500"),
        ("a\0b", "holds a NUL or a line break"),
        ("a\nb", "holds a NUL or a line break"),
        ("a\udc80", "is not valid Unicode text"),
    ]:
        with pytest.raises(InvalidInput, match=f"experiment name.*{rule}"):
            validation.experiment_name(bad)


@pytest.mark.parametrize("check", [validation.param_value, validation.tag_value])
def test_values_that_are_not_unicode_text_are_refused(check: Any) -> None:
    assert check("k", "réseau 🚀\x00\n") == "réseau 🚀\x00\n"
    for bad in ["\udc80", "ok\ud800", "\ud83d\ude00"]:  # the last: a pair, still not UTF-8
        with pytest.raises(InvalidInput, match=r"'k' value holds .* not valid Unicode text"):
            check("k", bad)


# -- batches -----------------------------------------------------------------------


def test_duplicate_keys_in_one_batch_are_named() -> None:
    validation.unique("param", ["a", "b", "c"])
    validation.unique("param", [])
    with pytest.raises(InvalidInput, match="duplicate tag key 'b' in one batch"):
        validation.unique("tag", ["a", "b", "c", "b"])


@pytest.mark.parametrize(
    ("metrics", "params", "tags"),
    [(1000, 0, 0), (0, 100, 0), (0, 0, 100), (800, 100, 100), (0, 0, 0)],
)
def test_batches_within_the_limits(metrics: int, params: int, tags: int) -> None:
    validation.batch_size(metrics, params, tags)


@pytest.mark.parametrize(
    ("metrics", "params", "tags", "message"),
    [
        (1001, 0, 0, "at most 1000 metrics, got 1001"),
        (0, 101, 0, "at most 100 params, got 101"),
        (0, 0, 101, "at most 100 tags, got 101"),
        (801, 100, 100, "at most 1000 metrics, params and tags in all"),
        (901, 100, 0, "at most 1000 metrics, params and tags in all"),
    ],
)
def test_batches_over_a_limit(metrics: int, params: int, tags: int, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        validation.batch_size(metrics, params, tags)


# -- any value, through the Client API and the tracking server -----------------------------

# Keys: arbitrary text and the shapes that once needed quoting or escaping.
KEYS = st.one_of(
    st.text(st.characters(exclude_categories=()), min_size=1, max_size=12),
    st.sampled_from(["a:b", "x/y.z", "yes", "null", "1", " lead", "a b", "..", "a//b", "é"]),
)
# Surrogates included (hypothesis leaves category Cs out unless told).
TEXT = st.text(st.characters(exclude_categories=()), max_size=30)
INTEGERS = st.one_of(
    st.integers(min_value=0, max_value=2**63 - 1),
    st.integers(min_value=2**62, max_value=2**70),
    st.integers(max_value=-1),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**400]),
)
NUMBERS = st.one_of(st.floats(), INTEGERS)
VALUES = st.one_of(
    st.tuples(st.just("param"), KEYS, TEXT),
    st.tuples(st.just("tag"), KEYS, TEXT),
    st.tuples(st.just("metric"), KEYS, st.tuples(NUMBERS, INTEGERS, INTEGERS)),
)
PROPERTY = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _check_stored(run: Run, kind: str, key: str, value: Any) -> None:
    """``run`` (from a search) holds ``value`` under ``key`` exactly as it was logged."""
    if kind == "param":
        assert run.params[key] == value
    elif kind == "tag":
        assert run.tags[key] == value
    else:
        number, step, timestamp = value
        point = run.metrics[key]
        assert (point.step, point.timestamp) == (step, timestamp)
        assert point.value == float(number) or (math.isnan(point.value) and math.isnan(number))


@pytest.fixture
def tracked(repo: Path) -> tuple[gitml.Client, str]:
    """A client and a witness run whose queries must never fail, whatever others log."""
    client = gitml.Client()
    witness = client.create_run(tags={"witness": "1"})
    client.log_param(witness.id, "a:b", "quoted key")  # run.yaml then goes through PyYAML
    return client, witness.id


@PROPERTY
@given(VALUES)
def test_any_value_through_the_client_is_refused_or_stored_and_searchable(
    tracked: tuple[gitml.Client, str], logged: tuple[str, str, Any]
) -> None:
    client, witness = tracked
    kind, key, value = logged
    run = client.create_run().id
    try:
        if kind == "param":
            client.log_param(run, key, value)
        elif kind == "tag":
            client.set_tag(run, key, value)
        else:
            client.log_metric(run, key, value[0], step=value[1], timestamp=value[2])
        client.flush()
    except GitmlError:
        stored = client.get_run(run)
        assert (stored.params, stored.metrics) == ({}, {})
    else:
        [found] = [r for r in client.search_runs(["0"]) if r.id == run]
        _check_stored(found, kind, key, value)
        if kind != "metric":
            where = f"{kind}s.`{key}` = {_quoted(value)}"
            assert run in [r.id for r in client.search_runs(["0"], where)]
    assert witness in [r.id for r in client.search_runs(["0"], "tags.witness = '1'")]


@pytest.fixture
def server(repo: Path) -> Iterator[TestClient]:
    app = create_app(ServerSettings(repo=repo))
    with TestClient(app) as http:
        witness = http.post(f"{PREFIX}/runs", json={"tags": {"witness": "1"}}).json()["id"]
        body = {"params": {"a:b": "quoted key"}}
        assert http.post(f"{PREFIX}/runs/{witness}/log-batch", json=body).status_code == 200
        yield http


@PROPERTY
@given(VALUES)
def test_any_value_over_rest_is_a_400_or_stored_and_searchable(
    server: TestClient, logged: tuple[str, str, Any]
) -> None:
    kind, key, value = logged
    run = server.post(f"{PREFIX}/runs", json={}).json()["id"]
    if kind == "metric":
        number, step, timestamp = value
        body: Any = {
            "metrics": [{"key": key, "value": number, "step": step, "timestamp": timestamp}]
        }
    else:
        body = {f"{kind}s": {key: value}}
    # json.dumps writes a lone surrogate as its \\udcXX escape, NaN as NaN, 10**400 in digits.
    answer = server.post(
        f"{PREFIX}/runs/{run}/log-batch",
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code in (200, 400), answer.text
    search = server.post(f"{PREFIX}/runs/search", json={})
    assert search.status_code == 200, search.text
    runs = {r["id"]: r for r in search.json()["runs"]}
    if answer.status_code == 400:
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert runs[run]["params"] == {} and runs[run]["metrics"] == {}
    else:
        # The API writes a metric that is not finite as "NaN", "Infinity" or "-Infinity".
        for point in runs[run]["metrics"].values():
            point["value"] = float(point["value"])
        _check_stored(Run.model_validate(runs[run]), kind, key, value)
    witness = server.post(f"{PREFIX}/runs/search", json={"filter": "tags.witness = '1'"})
    assert witness.status_code == 200 and len(witness.json()["runs"]) == 1
