"""The promotion policy and search decide every condition alike, and as MLflow does.

Runs are written as records on their refs in a real repository; search reads
them through the query index, the policy reads each from its ref.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitml.format.records import MetricValue, Run
from gitml.git.store import Change, Store
from gitml.query.index import QueryIndex
from gitml.query.search import search_runs
from gitml.registry.policy import check_condition, read_run
from testing.git import init_repo
from testing.mlflow_ref import mlflow_answer

METRIC_KEYS = ["m", "f1 score"]
PARAM_KEYS = ["p", "q"]
TAG_KEYS = ["t", "mlflow.runName"]
# Values where LIKE's wildcards and escape, and case beyond ASCII, matter.
VALUES = ["ÄB", "äb", "Ab", "a%", "a\\%", "a_b", "a\\b", "é", "É", "it's", ""]
TEXT = st.one_of(st.sampled_from(VALUES), st.text(alphabet="aAäÄéÉ%_\\'\"", max_size=3))
# Patterns that the runs' values often meet: a value, its case swapped, or a
# backslash before each of its characters.
PATTERNS = st.one_of(
    TEXT,
    st.sampled_from(VALUES).map(str.swapcase),
    st.sampled_from(VALUES).map(lambda v: "".join("\\" + c for c in v)),
)
METRICS = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, -1.0, 0.0, 0.5, 1.0]), st.floats()
)
RUNS = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.one_of(st.sampled_from(VALUES[:-1]), st.text("aAäÄ%_\\", min_size=1)),
            "status": st.sampled_from(["RUNNING", "FINISHED", "FAILED"]),
            "end_time": st.sampled_from([None, 1000, 2000]),
            "metrics": st.dictionaries(st.sampled_from(METRIC_KEYS), METRICS),
            "params": st.dictionaries(st.sampled_from(PARAM_KEYS), TEXT),
            "tags": st.dictionaries(st.sampled_from(TAG_KEYS), TEXT),
        }
    ),
    min_size=1,
    max_size=3,
)


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, QueryIndex]]:
    store = Store(init_repo(tmp_path_factory.mktemp("agreement") / "repo"))
    index = QueryIndex(store)
    yield store, index
    index.close()
    store.close()


def _run(experiment: str, spec: dict[str, Any]) -> Run:
    metrics = spec.get("metrics", {})
    return Run(
        id=uuid.uuid4().hex,
        experiment_id=experiment,
        name=spec["name"],
        status=spec.get("status", "FINISHED"),
        start_time=1000,
        end_time=spec.get("end_time"),
        user="ada",
        metrics={k: MetricValue(value=v, step=0, timestamp=0) for k, v in metrics.items()},
        params=spec.get("params", {}),
        tags=spec.get("tags", {}),
    )


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _key(prefix: str, key: str, quote: str) -> str:
    if quote == "" and key.isidentifier():
        return f"{prefix}.{key}"
    quote = quote or "`"
    return f"{prefix}.{quote}{key.replace(quote, quote * 2)}{quote}"


def _number(value: float) -> str:
    return "1e999" if value == math.inf else "-1e999" if value == -math.inf else repr(value)


@st.composite
def _comparison(draw: st.DrawFn) -> str:
    quote = draw(st.sampled_from(["", "`", '"', "'"]))
    kind = draw(st.sampled_from(["metric", "param", "param", "tag", "tag", "attribute", "time"]))
    if kind == "metric":
        ident = _key("metrics", draw(st.sampled_from(METRIC_KEYS)), quote)
        op = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">=", "IS NULL", "IS NOT NULL"]))
        if op.startswith("IS"):
            return f"{ident} {op}"
        value = draw(st.one_of(st.sampled_from([-1.0, 0.0, 0.5, 1.0]), st.floats(allow_nan=False)))
        return f"{ident} {op} {_number(value)}"
    if kind == "time":
        ident = draw(st.sampled_from(["start_time", "attributes.end_time"]))
        op = draw(st.sampled_from(["=", "!=", "<", ">="]))
        return f"{ident} {op} {draw(st.sampled_from([999, 1000, 1500, 2000]))}"
    if kind == "attribute":
        ident = draw(st.sampled_from(["run_name", "attributes.status", "user_id"]))
    else:
        prefix, keys = ("params", PARAM_KEYS) if kind == "param" else ("tags", TAG_KEYS)
        ident = _key(prefix, draw(st.sampled_from(keys)), quote)
    ops = ["=", "!=", "LIKE", "ILIKE", "LIKE", "ILIKE"]
    ops += ["IS NULL", "IS NOT NULL"] if kind != "attribute" else []
    op = draw(st.sampled_from(ops))
    if op.startswith("IS"):
        return f"{ident} {op}"
    return f"{ident} {op} {_quoted(draw(PATTERNS))}"


FILTERS = st.recursive(
    _comparison(),
    lambda inner: st.lists(inner, min_size=2, max_size=3).flatmap(
        lambda parts: st.sampled_from([" AND ", " OR "]).map(
            lambda word: "(" + word.join(parts) + ")"
        )
    ),
    max_leaves=4,
)


def _write(store: Store, runs: list[Run]) -> None:
    for run in runs:
        store.update(
            f"refs/gitml/runs/{run.id}",
            lambda _, run=run: Change(files={"run.yaml": run.to_yaml()}),
            "a run for the agreement test",
        )


@settings(max_examples=100, deadline=None, database=None)
@given(specs=RUNS, condition=FILTERS)
def test_the_policy_passes_exactly_the_runs_search_returns(
    repository: tuple[Store, QueryIndex], specs: list[dict[str, Any]], condition: str
) -> None:
    store, index = repository
    experiment = uuid.uuid4().hex
    runs = [_run(experiment, spec) for spec in specs]
    _write(store, runs)
    found = {r.id for r in search_runs(index, [experiment], condition, run_view_type="ALL")}
    for run in runs:
        recorded = read_run(store, store.tip, run.id)
        assert recorded is not None
        passes = check_condition(condition, recorded) is None
        assert passes == (run.id in found), (condition, recorded.to_plain())


# -- MLflow's SQL store as the reference -----------------------------------------------

MLFLOW_RUNS: dict[str, dict[str, dict[str, Any]]] = {
    "nan": {"metrics": {"m": math.nan, "f1 score": 0.5}, "params": {"p": "100%x", "q": "ÄB"}},
    "one": {"metrics": {"m": 1.0, "f1 score": 0.9}, "params": {"p": "100x", "q": "äb"}},
    "inf": {"metrics": {"m": math.inf}, "params": {"q": "Ab"}},
    "ninf": {"metrics": {"m": -math.inf}, "tags": {"t": "a_b"}},
    "none": {"tags": {"t": "axb"}},
}
# Filters on which MLflow's answer is the one gitml gives (not the documented
# differences: doubled quotes, a backslash escaping LIKE's wildcards, a
# trailing AND).
MLFLOW_FILTERS = [
    "metrics.m != 1",
    "metrics.m != 0",
    "metrics.m = 0",
    "metrics.m < 1",
    "metrics.m >= 1",
    "metrics.m > 1e308",
    "metrics.'m' != 1",
    "metrics.'f1 score' > 0.6",
    "metrics.'f1 score' != 0.5",
    "metrics.`f1 score` <= 0.5",
    'metrics."f1 score" = 0.9',
    "params.p LIKE '100%x'",
    "params.p LIKE '100_x'",
    "params.q LIKE 'äb'",
    "params.q ILIKE 'äb'",
    "params.q ILIKE 'ab'",
    "params.q LIKE 'ab'",
    "params.q != 'ÄB'",
    "params.'q' = 'Ab'",
    "tags.t LIKE 'a_b'",
    "tags.'t' ILIKE 'A%'",
    "metrics.m != 1 AND params.q ILIKE '%B'",
]
MLFLOW_SEARCH = """
import json, math, sys, tempfile
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

runs, filters = json.loads(sys.argv[1]), json.loads(sys.argv[2])
folder = tempfile.mkdtemp(dir=".")
store = SqlAlchemyStore(f"sqlite:///{folder}/mlflow.db", f"{folder}/artifacts")
experiment = store.create_experiment("agreement")
for name, run in runs.items():
    run_id = store.create_run(experiment, "ada", 0, [], name).info.run_id
    store.log_batch(
        run_id,
        [Metric(k, float(v), 0, 0) for k, v in run.get("metrics", {}).items()],
        [Param(k, v) for k, v in run.get("params", {}).items()],
        [RunTag(k, v) for k, v in run.get("tags", {}).items()],
    )
answers = {
    f: sorted(r.info.run_name for r in store.search_runs([experiment], f, ViewType.ALL))
    for f in filters
}
print(json.dumps(answers))
"""


@pytest.mark.slow
def test_search_and_the_policy_answer_as_mlflows_sql_store(
    repository: tuple[Store, QueryIndex], tmp_path: Path
) -> None:
    plain = {
        name: {part: {k: _json(v) for k, v in values.items()} for part, values in run.items()}
        for name, run in MLFLOW_RUNS.items()
    }
    theirs = mlflow_answer(MLFLOW_SEARCH, tmp_path, json.dumps(plain), json.dumps(MLFLOW_FILTERS))
    store, index = repository
    experiment = uuid.uuid4().hex
    runs = {name: _run(experiment, {"name": name, **run}) for name, run in MLFLOW_RUNS.items()}
    _write(store, list(runs.values()))
    for condition in MLFLOW_FILTERS:
        searched = sorted(
            r.name for r in search_runs(index, [experiment], condition, run_view_type="ALL")
        )
        passed = sorted(n for n, r in runs.items() if check_condition(condition, r) is None)
        assert (searched, passed) == (theirs[condition], theirs[condition]), condition


def _json(value: object) -> object:
    """JSON has no NaN or infinities: they travel as the strings ``float()`` reads."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
