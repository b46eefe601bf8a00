"""The JSON Schemas in schemas/ and the pydantic models in gitml.format.records agree.

Every sample document is checked by both; they must both accept it or both
reject it, and the sample says which. Then canonical YAML and error locations.
"""

from __future__ import annotations

import datetime
import math
from typing import Any

import pytest

from gitml.errors import InvalidRecord
from gitml.format import records, schemas, yamlio
from gitml.format.mlmodel import MLmodel
from gitml.format.records import (
    Artifact,
    ArtifactManifest,
    Config,
    Experiment,
    MetricValue,
    ModelVersion,
    Policy,
    Record,
    RegisteredModel,
    Run,
    ServedVersion,
    Source,
    StageDeclaration,
    StagePolicy,
)
from gitml.projects.spec import MLproject

MODELS: dict[str, type[Record]] = {
    "run": Run,
    "artifacts": ArtifactManifest,
    "experiment": Experiment,
    "config": Config,
    "registered-model": RegisteredModel,
    "model-version": ModelVersion,
    "stage": StageDeclaration,
    "MLmodel": MLmodel,
    "MLproject": MLproject,
}

RUN_ID = "0123456789abcdef0123456789abcdef"
SHA1 = "89abcdef0123456789abcdef0123456789abcdef"
SHA256 = "ab" * 32

RUN: dict[str, Any] = {
    "id": RUN_ID,
    "experiment_id": "0",
    "name": "baseline",
    "status": "RUNNING",
    "start_time": 1_700_000_000_000,
    "user": "alice",
}
POINT: dict[str, Any] = {"value": 0.5, "step": 3, "timestamp": 1_700_000_000_500}
ARTIFACT: dict[str, Any] = {"path": "model/model.pkl", "sha256": SHA256, "size": 10}
EXPERIMENT: dict[str, Any] = {"id": "0", "name": "Default", "creation_time": 0}


def run(**changes: Any) -> dict[str, Any]:
    return {**RUN, **changes}


def run_without(key: str) -> dict[str, Any]:
    return {k: v for k, v in RUN.items() if k != key}


def point(**changes: Any) -> dict[str, Any]:
    return run(metrics={"loss": {**POINT, **changes}})


def source(**changes: Any) -> dict[str, Any]:
    return run(source=changes)


def artifact(**changes: Any) -> dict[str, Any]:
    return {"artifacts": [{**ARTIFACT, **changes}]}


def artifact_without(key: str) -> dict[str, Any]:
    return {"artifacts": [{k: v for k, v in ARTIFACT.items() if k != key}]}


def experiment(**changes: Any) -> dict[str, Any]:
    return {**EXPERIMENT, **changes}


VERSION: dict[str, Any] = {
    "name": "churn",
    "version": 1,
    "source": f"runs:/{RUN_ID}/model",
    "run_id": RUN_ID,
    "run_commit": SHA1,
    "model_path": "model",
    "digest": "sha256:" + SHA256,
    "user": "alice",
    "creation_time": 1_700_000_000_000,
}
DECLARATION: dict[str, Any] = {"model": "churn", "versions": [{"version": 4, "weight": 100}]}


def version(**changes: Any) -> dict[str, Any]:
    return {**VERSION, **changes}


def version_without(key: str) -> dict[str, Any]:
    return {k: v for k, v in VERSION.items() if k != key}


def declaration(**changes: Any) -> dict[str, Any]:
    return {**DECLARATION, **changes}


VALID = True
INVALID = False

# (kind, label, document, valid)
SAMPLES: list[tuple[str, str, Any, bool]] = [
    # -- run: accepted
    ("run", "minimal", RUN, VALID),
    (
        "run",
        "complete",
        run(
            lifecycle_stage="deleted",
            status="FINISHED",
            end_time=1_700_000_100_000,
            parent_run_id="f" * 32,
            source={
                "commit": SHA1,
                "snapshot": "0" * 40,
                "branch": "main",
                "dirty": True,
                "entry_point": "train.py",
            },
            params={"lr": "0.01", "depth": "6"},
            tags={"team": "growth", "note": "multi\nline\tvalue"},
            metrics={"loss": POINT, "train/acc": {"value": 1, "step": 0, "timestamp": 0}},
        ),
        VALID,
    ),
    *[("run", f"status {s}", run(status=s), VALID) for s in records.RUN_STATUSES],
    (
        "run",
        "null where allowed",
        run(
            end_time=None,
            parent_run_id=None,
            source={"commit": None, "snapshot": None, "branch": None, "entry_point": None},
        ),
        VALID,
    ),
    ("run", "empty maps", run(params={}, tags={}, metrics={}, source={}), VALID),
    ("run", "start_time zero", run(start_time=0), VALID),
    ("run", "integral float time", run(start_time=2.0, end_time=3.0), VALID),
    ("run", "name of 250", run(name="n" * 250), VALID),
    ("run", "unicode name", run(name="réseau ✓"), VALID),
    ("run", "experiment id charset", run(experiment_id="exp_1-B"), VALID),
    ("run", "metric nan", point(value=math.nan), VALID),
    ("run", "metric inf", point(value=math.inf), VALID),
    ("run", "metric -inf", point(value=-math.inf), VALID),
    ("run", "metric int value", point(value=3), VALID),
    ("run", "metric step 2.0", point(step=2.0), VALID),
    # -- run: rejected
    ("run", "id uppercase", run(id=RUN_ID.upper()), INVALID),
    ("run", "id 31 chars", run(id=RUN_ID[:-1]), INVALID),
    ("run", "id 33 chars", run(id=RUN_ID + "a"), INVALID),
    ("run", "id not hex", run(id="g" * 32), INVALID),
    ("run", "id uuid with dashes", run(id="01234567-89ab-cdef-0123-456789abcdef"), INVALID),
    ("run", "id trailing newline", run(id=RUN_ID + "\n"), INVALID),
    ("run", "id int", run(id=12345), INVALID),
    ("run", "experiment id empty", run(experiment_id=""), INVALID),
    ("run", "experiment id slash", run(experiment_id="a/b"), INVALID),
    ("run", "experiment id 65", run(experiment_id="e" * 65), INVALID),
    ("run", "experiment id newline", run(experiment_id="e\n"), INVALID),
    ("run", "name empty", run(name=""), INVALID),
    ("run", "name of 251", run(name="n" * 251), INVALID),
    ("run", "unknown field", run(colour="red"), INVALID),
    ("run", "unknown source field", source(sha=SHA1), INVALID),
    ("run", "unknown metric field", point(unit="s"), INVALID),
    ("run", "negative step", point(step=-1), INVALID),
    ("run", "negative metric timestamp", point(timestamp=-5), INVALID),
    ("run", "fractional step", point(step=1.5), INVALID),
    ("run", "bool step", point(step=True), INVALID),
    ("run", "string step", point(step="3"), INVALID),
    ("run", "string metric value", point(value="0.5"), INVALID),
    ("run", "bool metric value", point(value=True), INVALID),
    ("run", "null metric value", point(value=None), INVALID),
    ("run", "metric missing value", run(metrics={"loss": {"step": 0, "timestamp": 0}}), INVALID),
    ("run", "metric not a mapping", run(metrics={"loss": 0.5}), INVALID),
    ("run", "bad status", run(status="DONE"), INVALID),
    ("run", "lowercase status", run(status="running"), INVALID),
    ("run", "null status", run(status=None), INVALID),
    ("run", "bad lifecycle", run(lifecycle_stage="archived"), INVALID),
    *[("run", f"missing {key}", run_without(key), INVALID) for key in RUN],
    ("run", "negative start_time", run(start_time=-1), INVALID),
    ("run", "negative end_time", run(end_time=-1), INVALID),
    ("run", "string start_time", run(start_time="1700000000000"), INVALID),
    ("run", "bool start_time", run(start_time=True), INVALID),
    ("run", "fractional start_time", run(start_time=1.5), INVALID),
    ("run", "date start_time", run(start_time=datetime.date(2024, 1, 1)), INVALID),
    ("run", "null start_time", run(start_time=None), INVALID),
    ("run", "int user", run(user=5), INVALID),
    ("run", "null user", run(user=None), INVALID),
    ("run", "null name", run(name=None), INVALID),
    ("run", "bad parent id", run(parent_run_id="parent"), INVALID),
    ("run", "int param value", run(params={"lr": 1}), INVALID),
    ("run", "float param value", run(params={"lr": 0.1}), INVALID),
    ("run", "null param value", run(params={"lr": None}), INVALID),
    ("run", "int param key", run(params={1: "a"}), INVALID),
    ("run", "bool tag value", run(tags={"ok": True}), INVALID),
    ("run", "params a list", run(params=["lr"]), INVALID),
    ("run", "null params", run(params=None), INVALID),
    ("run", "null source", run(source=None), INVALID),
    ("run", "short commit", source(commit="abc123"), INVALID),
    ("run", "uppercase commit", source(commit=SHA1.upper()), INVALID),
    ("run", "snapshot trailing newline", source(snapshot=SHA1 + "\n"), INVALID),
    ("run", "string dirty", source(dirty="yes"), INVALID),
    ("run", "int dirty", source(dirty=1), INVALID),
    ("run", "null dirty", source(dirty=None), INVALID),
    ("run", "int branch", source(branch=1), INVALID),
    ("run", "top level list", [RUN], INVALID),
    ("run", "top level null", None, INVALID),
    ("run", "top level string", "run", INVALID),
    ("run", "top level int key", {**RUN, 1: "x"}, INVALID),
    # -- artifacts
    ("artifacts", "empty document", {}, VALID),
    ("artifacts", "empty list", {"artifacts": []}, VALID),
    ("artifacts", "git entry", artifact(storage="git"), VALID),
    ("artifacts", "external entry", artifact(storage="external", size=0), VALID),
    ("artifacts", "default storage", artifact(), VALID),
    ("artifacts", "two entries", {"artifacts": [ARTIFACT, {**ARTIFACT, "path": "b"}]}, VALID),
    ("artifacts", "short sha256", artifact(sha256="ab" * 31), INVALID),
    ("artifacts", "uppercase sha256", artifact(sha256=SHA256.upper()), INVALID),
    ("artifacts", "sha256 newline", artifact(sha256=SHA256 + "\n"), INVALID),
    ("artifacts", "negative size", artifact(size=-1), INVALID),
    ("artifacts", "string size", artifact(size="10"), INVALID),
    ("artifacts", "fractional size", artifact(size=1.5), INVALID),
    ("artifacts", "empty path", artifact(path=""), INVALID),
    ("artifacts", "null path", artifact(path=None), INVALID),
    ("artifacts", "bad storage", artifact(storage="s3"), INVALID),
    ("artifacts", "dotted names", artifact(path="..a/.gitx/a..b/..."), VALID),
    ("artifacts", "100 levels", artifact(path="a/" * 99 + "f"), VALID),
    ("artifacts", "101 levels", artifact(path="a/" * 100 + "f"), INVALID),
    ("artifacts", "escapes with ..", artifact(path="model/../../x"), INVALID),
    ("artifacts", "only ..", artifact(path=".."), INVALID),
    ("artifacts", "absolute", artifact(path="/etc/x"), INVALID),
    ("artifacts", "drive", artifact(path="C:/x"), INVALID),
    ("artifacts", "drive relative", artifact(path="C:x"), INVALID),
    ("artifacts", "backslash", artifact(path="model\\x"), INVALID),
    ("artifacts", "NUL", artifact(path="a\0b"), INVALID),
    ("artifacts", "lone surrogate", artifact(path="a\udc80"), INVALID),
    ("artifacts", "in .git", artifact(path=".git/hooks/x"), INVALID),
    ("artifacts", "in .gitml", artifact(path="a/.gitml/x"), INVALID),
    ("artifacts", "not normalised", artifact(path="a/./b"), INVALID),
    ("artifacts", "empty component", artifact(path="a//b"), INVALID),
    ("artifacts", "trailing slash", artifact(path="a/"), INVALID),
    ("artifacts", "only .", artifact(path="."), INVALID),
    ("artifacts", "unknown entry field", artifact(md5="x"), INVALID),
    *[("artifacts", f"missing {key}", artifact_without(key), INVALID) for key in ARTIFACT],
    ("artifacts", "not a list", {"artifacts": ARTIFACT}, INVALID),
    ("artifacts", "null list", {"artifacts": None}, INVALID),
    ("artifacts", "entry not a mapping", {"artifacts": ["model.pkl"]}, INVALID),
    ("artifacts", "unknown top field", {"artifacts": [], "files": []}, INVALID),
    # -- experiment
    ("experiment", "minimal", EXPERIMENT, VALID),
    (
        "experiment",
        "deleted with tags",
        experiment(lifecycle_stage="deleted", tags={"a": "b"}),
        VALID,
    ),
    ("experiment", "name of 500", experiment(name="x" * 500), VALID),
    ("experiment", "updated", experiment(last_update_time=7), VALID),
    ("experiment", "update time null", experiment(last_update_time=None), VALID),
    ("experiment", "negative update time", experiment(last_update_time=-1), INVALID),
    ("experiment", "id with slash", experiment(id="a/b"), INVALID),
    ("experiment", "empty id", experiment(id=""), INVALID),
    ("experiment", "int id", experiment(id=0), INVALID),
    ("experiment", "name of 501", experiment(name="x" * 501), INVALID),
    ("experiment", "negative creation", experiment(creation_time=-1), INVALID),
    ("experiment", "string creation", experiment(creation_time="0"), INVALID),
    ("experiment", "int tag value", experiment(tags={"a": 1}), INVALID),
    ("experiment", "int tag key", experiment(tags={1: "a"}), INVALID),
    ("experiment", "bad lifecycle", experiment(lifecycle_stage="gone"), INVALID),
    ("experiment", "unknown field", experiment(owner="me"), INVALID),
    ("experiment", "missing name", {"id": "0", "creation_time": 0}, INVALID),
    ("experiment", "missing creation_time", {"id": "0", "name": "n"}, INVALID),
    # -- config
    ("config", "empty", {}, VALID),
    (
        "config",
        "every field",
        {
            "experiment": "churn",
            "artifact_store": "/shared/artifacts",
            "artifact_endpoint_url": "http://127.0.0.1:9000",
            "artifact_threshold": 0,
            "flush_interval": 0.5,
            "flush_points": 1,
        },
        VALID,
    ),
    ("config", "null store", {"artifact_store": None}, VALID),
    ("config", "s3 store", {"artifact_store": "s3://bucket/runs/artifacts"}, VALID),
    ("config", "https endpoint", {"artifact_endpoint_url": "https://s3.example.com"}, VALID),
    ("config", "endpoint without scheme", {"artifact_endpoint_url": "minio:9000"}, INVALID),
    ("config", "endpoint without host", {"artifact_endpoint_url": "http://"}, INVALID),
    ("config", "int endpoint", {"artifact_endpoint_url": 9000}, INVALID),
    ("config", "int interval", {"flush_interval": 2}, VALID),
    ("config", "zero interval", {"flush_interval": 0}, INVALID),
    ("config", "negative interval", {"flush_interval": -1.0}, INVALID),
    ("config", "nan interval", {"flush_interval": math.nan}, INVALID),
    ("config", "string interval", {"flush_interval": "5"}, INVALID),
    ("config", "bool interval", {"flush_interval": True}, INVALID),
    ("config", "zero points", {"flush_points": 0}, INVALID),
    ("config", "bool points", {"flush_points": True}, INVALID),
    ("config", "negative threshold", {"artifact_threshold": -1}, INVALID),
    ("config", "fractional threshold", {"artifact_threshold": 1.5}, INVALID),
    ("config", "string threshold", {"artifact_threshold": "10MB"}, INVALID),
    ("config", "empty experiment", {"experiment": ""}, INVALID),
    ("config", "null experiment", {"experiment": None}, INVALID),
    ("config", "int store", {"artifact_store": 5}, INVALID),
    ("config", "unknown key", {"flush": 5}, INVALID),
    ("config", "top level null", None, INVALID),
    ("config", "stages", {"stages": ["dev", "prod"], "archive_stage": None}, VALID),
    (
        "config",
        "policy",
        {
            "policy": {
                "ordered": True,
                "stages": {
                    "production": {
                        "after": ["staging"],
                        "metrics": ["metrics.accuracy >= 0.9"],
                        "tags": ["validated"],
                        "authors": ["*@example.com"],
                    }
                },
            }
        },
        VALID,
    ),
    ("config", "no stages", {"stages": []}, INVALID),
    ("config", "repeated stage", {"stages": ["a", "a"]}, INVALID),
    ("config", "stage with slash", {"stages": ["gitml/prod"]}, INVALID),
    ("config", "uppercase stage", {"stages": ["Prod"]}, INVALID),
    ("config", "policy unknown key", {"policy": {"order": True}}, INVALID),
    ("config", "policy stage unknown key", {"policy": {"stages": {"p": {"min": 1}}}}, INVALID),
    ("config", "policy metrics a string", {"policy": {"stages": {"p": {"metrics": "x"}}}}, INVALID),
    ("config", "policy bad stage name", {"policy": {"stages": {"P R": {}}}}, INVALID),
    # -- registered model
    ("registered-model", "minimal", {"name": "churn", "creation_time": 0}, VALID),
    (
        "registered-model",
        "complete",
        {"name": "churn.v2_x-y", "description": "d", "creation_time": 5, "tags": {"a": "b"}},
        VALID,
    ),
    ("registered-model", "deleted", {"name": "a", "creation_time": 0, "status": "DELETED"}, VALID),
    (
        "registered-model",
        "bad status",
        {"name": "a", "creation_time": 0, "status": "GONE"},
        INVALID,
    ),
    ("registered-model", "slash in name", {"name": "a/b", "creation_time": 0}, INVALID),
    ("registered-model", "dot dot in name", {"name": "a..b", "creation_time": 0}, INVALID),
    ("registered-model", "leading dot", {"name": ".a", "creation_time": 0}, INVALID),
    ("registered-model", "trailing dot", {"name": "a.", "creation_time": 0}, INVALID),
    ("registered-model", "space in name", {"name": "a b", "creation_time": 0}, INVALID),
    ("registered-model", "name of 201", {"name": "n" * 201, "creation_time": 0}, INVALID),
    ("registered-model", "missing time", {"name": "a"}, INVALID),
    ("registered-model", "int tag", {"name": "a", "creation_time": 0, "tags": {"a": 1}}, INVALID),
    # -- model version
    ("model-version", "minimal", VERSION, VALID),
    (
        "model-version",
        "complete",
        version(
            flavors=["python_function", "sklearn"],
            signature={"inputs": "a: double", "outputs": "tensor float64 (-1,)"},
            description="first",
            tags={"validated": "true"},
            status="DELETED",
        ),
        VALID,
    ),
    *[("model-version", f"missing {key}", version_without(key), INVALID) for key in VERSION],
    ("model-version", "version 0", version(version=0), INVALID),
    ("model-version", "string version", version(version="1"), INVALID),
    ("model-version", "bad digest", version(digest=SHA256), INVALID),
    ("model-version", "short commit", version(run_commit="abc"), INVALID),
    ("model-version", "bad run id", version(run_id="x"), INVALID),
    ("model-version", "bad status", version(status="Production"), INVALID),
    ("model-version", "empty source", version(source=""), INVALID),
    ("model-version", "nested model path", version(model_path="a/model"), VALID),
    ("model-version", "model path escapes", version(model_path="../model"), INVALID),
    ("model-version", "absolute model path", version(model_path="/model"), INVALID),
    ("model-version", "flavors a string", version(flavors="sklearn"), INVALID),
    ("model-version", "unknown field", version(stage="production"), INVALID),
    # -- stage declaration
    ("stage", "one version", DECLARATION, VALID),
    (
        "stage",
        "canary with note",
        declaration(versions=[{"version": 4, "weight": 90}, {"version": 5, "weight": 10}], note=""),
        VALID,
    ),
    ("stage", "default weight", declaration(versions=[{"version": 4}]), VALID),
    ("stage", "no versions", declaration(versions=[]), INVALID),
    ("stage", "weight over 100", declaration(versions=[{"version": 4, "weight": 101}]), INVALID),
    ("stage", "negative weight", declaration(versions=[{"version": 4, "weight": -1}]), INVALID),
    ("stage", "fractional weight", declaration(versions=[{"version": 4, "weight": 0.5}]), INVALID),
    ("stage", "version 0", declaration(versions=[{"version": 0}]), INVALID),
    ("stage", "missing model", {"versions": [{"version": 1}]}, INVALID),
    ("stage", "unknown field", declaration(stage="production"), INVALID),
    ("stage", "unknown served field", declaration(versions=[{"version": 1, "pct": 5}]), INVALID),
    (
        "stage",
        "version with its digest",
        declaration(versions=[{"version": 4, "weight": 100, "digest": "sha256:" + SHA256}]),
        VALID,
    ),
    (
        "stage",
        "digest without scheme",
        declaration(versions=[{"version": 4, "digest": SHA256}]),
        INVALID,
    ),
    # -- MLmodel
    ("MLmodel", "one flavor", {"flavors": {"python_function": {"loader_module": "m"}}}, VALID),
    ("MLmodel", "no flavors", {"flavors": {}}, INVALID),
    ("MLmodel", "missing flavors", {"run_id": RUN_ID}, INVALID),
    # -- MLproject
    ("MLproject", "empty", {}, VALID),
    ("MLproject", "one entry point", {"entry_points": {"main": {"command": "python t.py"}}}, VALID),
    (
        "MLproject",
        "both parameter forms",
        {
            "name": "p",
            "python_env": "python_env.yaml",
            "entry_points": {
                "main": {
                    "parameters": {"a": "float", "b": {"type": "int", "default": 3}},
                    "command": "python t.py {a} {b}",
                }
            },
        },
        VALID,
    ),
    (
        "MLproject",
        "docker with volumes and environment",
        {"docker_env": {"image": "i", "volumes": ["/a:/b"], "environment": ["X", ["Y", "1"]]}},
        VALID,
    ),
    ("MLproject", "unknown keys are MLflow's to ignore", {"kubernetes_env": {"a": 1}}, VALID),
    ("MLproject", "two environments", {"python_env": "p.yaml", "conda_env": "c.yaml"}, INVALID),
    ("MLproject", "docker without image", {"docker_env": {"volumes": []}}, INVALID),
    ("MLproject", "entry point without command", {"entry_points": {"main": {}}}, INVALID),
    ("MLproject", "numeric command", {"entry_points": {"main": {"command": 3}}}, INVALID),
    (
        "MLproject",
        "parameter of no type",
        {"entry_points": {"main": {"command": "x", "parameters": {"a": None}}}},
        INVALID,
    ),
]


def schema_accepts(kind: str, document: Any) -> bool:
    return not schemas.errors(kind, document, where="refs/x", path="f.yaml")


def model_accepts(kind: str, document: Any) -> bool:
    try:
        records.validate(MODELS[kind], document, where="refs/x", path="f.yaml")
    except InvalidRecord:
        return False
    return True


@pytest.mark.parametrize(
    ("kind", "document", "valid"),
    [pytest.param(k, d, v, id=f"{k}: {label}") for k, label, d, v in SAMPLES],
)
def test_schema_and_model_agree(kind: str, document: Any, valid: bool) -> None:
    assert (schema_accepts(kind, document), model_accepts(kind, document)) == (valid, valid)


@pytest.mark.parametrize(
    ("kind", "document"),
    [pytest.param(k, d, id=f"{k}: {label}") for k, label, d, v in SAMPLES if v],
)
def test_what_the_model_writes_the_schema_accepts(kind: str, document: Any) -> None:
    record = records.validate(MODELS[kind], document, where="", path="f.yaml")
    data = record.to_yaml()
    assert schemas.check_bytes(kind, data, where="", path="f.yaml") == []
    again = records.parse(MODELS[kind], data, where="", path="f.yaml")
    assert again.to_yaml() == data


def test_every_kind_has_samples_both_ways() -> None:
    for kind in MODELS:
        assert {v for k, _, _, v in SAMPLES if k == kind} == {VALID, INVALID}
    assert set(MODELS) == schemas.ALL_KINDS


# -- the same fields, defaults and required lists ----------------------------


def _shapes() -> list[tuple[str, dict[str, Any], type[Record]]]:
    run = schemas.load("run")
    return [
        ("run", run, Run),
        ("run source", run["$defs"]["source"], Source),
        ("run metric", run["$defs"]["metric"], MetricValue),
        ("artifacts", schemas.load("artifacts"), ArtifactManifest),
        ("artifact", schemas.load("artifacts")["properties"]["artifacts"]["items"], Artifact),
        ("experiment", schemas.load("experiment"), Experiment),
        ("config", schemas.load("config"), Config),
        ("policy", schemas.load("config")["$defs"]["policy"], Policy),
        ("stage policy", schemas.load("config")["$defs"]["stage_policy"], StagePolicy),
        ("registered model", schemas.load("registered-model"), RegisteredModel),
        ("model version", schemas.load("model-version"), ModelVersion),
        ("stage", schemas.load("stage"), StageDeclaration),
        ("served version", schemas.load("stage")["$defs"]["served"], ServedVersion),
    ]


@pytest.mark.parametrize(("schema", "model"), [pytest.param(s, m, id=n) for n, s, m in _shapes()])
def test_schema_properties_are_the_model_fields(
    schema: dict[str, Any], model: type[Record]
) -> None:
    assert list(schema["properties"]) == list(model.model_fields)
    required = {name for name, f in model.model_fields.items() if f.is_required()}
    assert set(schema.get("required", [])) == required
    assert schema["additionalProperties"] is False
    for name, prop in schema["properties"].items():
        if "default" in prop:
            info = model.model_fields[name]
            default = info.default_factory() if info.default_factory else info.default  # type: ignore[call-arg]
            assert default == prop["default"], name


# -- canonical YAML ------------------------------------------------------------


def _run(params: dict[str, str], tags: dict[str, str], metrics: dict[str, MetricValue]) -> Run:
    return Run(
        id=RUN_ID,
        experiment_id="0",
        name="baseline",
        status="RUNNING",
        start_time=1,
        user="alice",
        params=params,
        tags=tags,
        metrics=metrics,
    )


def test_maps_are_sorted_and_fields_keep_model_order() -> None:
    m = MetricValue(value=0.25, step=1, timestamp=2)
    record = _run({"z": "1", "a": "2", "m": "3"}, {"team": "x", "b": "y"}, {"loss": m, "acc": m})
    data = yamlio.load(record.to_yaml())
    assert list(data) == list(Run.model_fields)
    assert list(data["params"]) == ["a", "m", "z"]
    assert list(data["tags"]) == ["b", "team"]
    assert list(data["metrics"]) == ["acc", "loss"]
    assert list(data["metrics"]["acc"]) == ["value", "step", "timestamp"]
    assert list(data["source"]) == list(Source.model_fields)
    lines = record.to_yaml().decode().splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["id", "experiment_id", "name"]
    at = lines.index("params:")  # block style: one line per value, a one-line diff per change
    assert [line.split(":")[0] for line in lines[at + 1 : at + 5]] == ["  a", "  m", "  z", "tags"]


def test_a_declaration_without_digests_is_written_back_as_it_was_read() -> None:
    old = b"model: churn\nversions:\n- version: 3\n  weight: 100\nnote: null\n"
    declared = records.parse(StageDeclaration, old, where="", path="models/churn.yaml")
    assert declared.versions[0].digest is None
    assert declared.to_yaml() == old
    digest = "sha256:" + SHA256
    pinned = declared.model_copy(
        update={"versions": [declared.versions[0].model_copy(update={"digest": digest})]}
    )
    assert yamlio.load(pinned.to_yaml())["versions"] == [
        {"version": 3, "weight": 100, "digest": digest}
    ]


def test_equal_records_dump_byte_identical() -> None:
    m1 = MetricValue(value=0.5, step=1, timestamp=2)
    m2 = MetricValue(value=math.nan, step=1, timestamp=2)
    one = _run({"b": "1", "a": "2"}, {"y": "1", "x": "2"}, {"l": m1, "k": m2})
    two = _run({"a": "2", "b": "1"}, {"x": "2", "y": "1"}, {"k": m2, "l": m1})
    assert one.to_yaml() == two.to_yaml()
    assert records.parse(Run, one.to_yaml(), where="", path="run.yaml").to_yaml() == one.to_yaml()

    e1 = Experiment(id="1", name="e", creation_time=0, tags={"b": "1", "a": "2"})
    e2 = Experiment(id="1", name="e", creation_time=0, tags={"a": "2", "b": "1"})
    assert e1.to_yaml() == e2.to_yaml()
    assert list(yamlio.load(e1.to_yaml())["tags"]) == ["a", "b"]


def test_string_values_that_look_like_other_types_stay_strings() -> None:
    tricky = {
        "bool": "true",
        "yes": "yes",
        "null": "null",
        "tilde": "~",
        "float": "1.0",
        "int": "007",
        "date": "2024-01-01",
        "empty": "",
        "spaces": "  padded  ",
        "newline": "a\nb\n",
        "tab": "a\tb",
        "colon": "a: b",
        "hash": "# not a comment",
        "unicode": "naïve ✓",
        "long": "word " * 1500,
    }
    record = _run(tricky, {}, {})
    data = record.to_yaml()
    assert "naïve ✓".encode() in data  # unicode is written as is
    back = records.parse(Run, data, where="", path="run.yaml")
    assert back.params == tricky
    assert schemas.check_bytes("run", data, where="", path="run.yaml") == []


def test_special_floats_round_trip() -> None:
    metrics = {
        "nan": MetricValue(value=math.nan, step=0, timestamp=0),
        "inf": MetricValue(value=math.inf, step=0, timestamp=0),
        "ninf": MetricValue(value=-math.inf, step=0, timestamp=0),
        "tiny": MetricValue(value=5e-324, step=0, timestamp=0),
        "third": MetricValue(value=1 / 3, step=0, timestamp=0),
    }
    back = records.parse(Run, _run({}, {}, metrics).to_yaml(), where="", path="run.yaml")
    assert math.isnan(back.metrics["nan"].value)
    assert back.metrics["inf"].value == math.inf
    assert back.metrics["ninf"].value == -math.inf
    assert back.metrics["tiny"].value == 5e-324
    assert back.metrics["third"].value == 1 / 3


# -- error locations -------------------------------------------------------------


def _error(model: type[Record], data: bytes) -> InvalidRecord:
    with pytest.raises(InvalidRecord) as info:
        records.parse(model, data, where="refs/gitml/runs/abc", path="run.yaml")
    return info.value


def test_malformed_yaml_names_where_and_path() -> None:
    err = _error(Run, b"id: [unclosed\nname: x\n")
    assert (err.where, err.path, err.field) == ("refs/gitml/runs/abc", "run.yaml", "(document)")
    assert "not valid YAML" in err.reason
    assert str(err).startswith("refs/gitml/runs/abc:run.yaml: field '(document)': not valid YAML")


def test_non_mapping_document_is_a_document_error() -> None:
    assert _error(Run, b"- a\n- b\n").field == "(document)"
    assert _error(Run, b"").field == "(document)"


@pytest.mark.parametrize(
    ("document", "field", "reason"),
    [
        (point(step=-1), "metrics.loss.step", "greater than or equal to 0"),
        (run(colour="red"), "colour", "Extra inputs are not permitted"),
        (run_without("user"), "user", "Field required"),
        (run(status="DONE"), "status", "RUNNING"),
        (run(params={"lr": 0.1}), "params.lr", "string"),
        (source(commit="abc"), "source.commit", "pattern"),
        (run(start_time="5"), "start_time", "integer"),
    ],
)
def test_a_bad_field_is_named(document: dict[str, Any], field: str, reason: str) -> None:
    err = _error(Run, yamlio.dump(document))
    assert (err.where, err.path, err.field) == ("refs/gitml/runs/abc", "run.yaml", field)
    assert reason in err.reason
    assert f"field '{field}'" in str(err)


def test_an_error_without_where_starts_with_the_path() -> None:
    with pytest.raises(InvalidRecord) as info:
        records.parse(Config, b"flush_points: 0\n", where="", path="/p/.gitml.yaml")
    assert str(info.value).startswith("/p/.gitml.yaml: field 'flush_points': ")


def test_latest_prefers_step_then_timestamp_and_never_nan() -> None:
    a = MetricValue(value=1.0, step=2, timestamp=5)
    assert records.latest(None, a) is a
    assert records.latest(a, MetricValue(value=0.0, step=1, timestamp=9)) is a
    later = MetricValue(value=0.0, step=2, timestamp=6)
    assert records.latest(a, later) is later
    nan = MetricValue(value=math.nan, step=2, timestamp=5)
    assert records.latest(a, nan) is a
    assert records.latest(nan, a) is a
