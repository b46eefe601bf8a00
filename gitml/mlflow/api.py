"""MLflow's REST API (2.0, as MLflow 3.17's client calls it) on gitml's records.

``MlflowApi.handle(method, path, body)`` takes the JSON body of one request
(the query of a GET, as a mapping) and returns MLflow's JSON answer, or
raises ``MlflowApiError`` with MLflow's error code and HTTP status, so that
MLflow's client raises the exceptions its users catch. Nothing here imports
MLflow: the server mounts it over HTTP (``gitml.server.mlflow_routes``) and the
``gitml:`` tracking-URI plugin calls it in process (``gitml.mlflow.plugin``).

What maps to what:

- an experiment, a run, a metric point, a param and a tag are gitml's own;
  ``mlflow.user`` names the run's user at creation, ``mlflow.runName`` is the
  run's name and ``mlflow.parentRunId`` its parent, and all three are read
  back from the record;
- a logged model (MLflow 3) is the folder ``<name>`` of the artifacts of the
  run it was logged in (one per run: its id is ``m-<run id>``), so a version
  registered from it is a version of ``runs:/<run id>/<name>``; its tags and
  params are the run's tags ``gitml.logged_model.tags.<key>`` and
  ``gitml.logged_model.params.<key>`` (and its params include the run's own);
- an alias is a stage branch (``gitml/<alias>``), and MLflow 2's stages
  ``Staging``, ``Production`` and ``Archived`` are the branches of the same
  names in lowercase: setting one is an assignment under the project's policy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gitml.errors import Conflict, GitmlError, InvalidInput, InvalidRecord, NotFound, RefBusy
from gitml.format import layout
from gitml.format import paths as artifact_paths
from gitml.format.records import Experiment, ModelVersion, RegisteredModel, Run
from gitml.registry.declarations import read_declaration
from gitml.registry.stages import PolicyRefusal, Stages
from gitml.registry.versions import Registry
from gitml.tracking import validation
from gitml.tracking.client import Client
from gitml.tracking.entities import Metric, metric_from_json, metric_to_json
from gitml.tracking.writer import Latest, checked_metric

# MLflow's error codes and the HTTP status its server answers each with.
HTTP_STATUS = {
    "INVALID_PARAMETER_VALUE": 400,
    "RESOURCE_ALREADY_EXISTS": 400,
    "BAD_REQUEST": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "RESOURCE_CONFLICT": 409,
    "INVALID_STATE": 500,
    "INTERNAL_ERROR": 500,
    "NOT_IMPLEMENTED": 501,
    "TEMPORARILY_UNAVAILABLE": 503,
}

# MLflow 2's model stages and the stage branches they are.
MLFLOW_STAGES = {"staging": "Staging", "production": "Production", "archived": "Archived"}
LOGGED_MODEL_TAG = "gitml.logged_model"
# A logged model's own tags and params are its run's tags under these prefixes.
LOGGED_MODEL_TAGS = LOGGED_MODEL_TAG + ".tags."
LOGGED_MODEL_PARAMS = LOGGED_MODEL_TAG + ".params."
_LOGGED_MODEL_ID = re.compile(r"^m-([0-9a-f]{32})$")
_EXPERIMENT_FILTER = re.compile(
    r"^\s*(?:attribute\.)?name\s*(=|!=|LIKE|ILIKE)\s*'((?:[^']|'')*)'\s*$", re.IGNORECASE
)
_TAG_FILTER = re.compile(
    r"^\s*tags?\.(?:`([^`]+)`|([\w.]+))\s*(=|!=|LIKE|ILIKE)\s*'((?:[^']|'')*)'\s*$",
    re.IGNORECASE,
)
_IS_PROMPT = "mlflow.prompt.is_prompt"
# " AND " outside single quotes: an even number of quotes follows it.
_AND = re.compile(r"\s+AND\s+(?=(?:[^']*'[^']*')*[^']*$)", re.IGNORECASE)
_MODEL_FILTER = re.compile(
    r"^\s*(name|run_id)\s*(=|LIKE|ILIKE)\s*'((?:[^']|'')*)'\s*$", re.IGNORECASE
)


class MlflowApiError(Exception):
    """One error answer: MLflow's ``error_code``, its message, and the HTTP status."""

    def __init__(self, error_code: str, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message
        self.http_status = http_status or HTTP_STATUS.get(error_code, 500)

    def body(self) -> dict[str, str]:
        return {"error_code": self.error_code, "message": self.message}


def _translate(exc: GitmlError) -> MlflowApiError:
    """The MLflow error a gitml error is, for MLflow's client to raise as its own."""
    if isinstance(exc, PolicyRefusal):
        return MlflowApiError("PERMISSION_DENIED", str(exc))
    if isinstance(exc, NotFound):
        return MlflowApiError("RESOURCE_DOES_NOT_EXIST", str(exc))
    if isinstance(exc, (InvalidInput, Conflict)):
        return MlflowApiError("INVALID_PARAMETER_VALUE", str(exc))
    if isinstance(exc, RefBusy):
        return MlflowApiError("TEMPORARILY_UNAVAILABLE", str(exc))
    if isinstance(exc, InvalidRecord):
        return MlflowApiError("INVALID_STATE", str(exc))
    return MlflowApiError("INTERNAL_ERROR", str(exc))


Body = Mapping[str, Any]
Handler = Callable[["MlflowApi", Body], dict[str, Any]]
ROUTES: dict[tuple[str, str], Handler] = {}
# Routes with a path parameter: (method, pattern) -> handler taking the match's groups.
PATTERN_ROUTES: list[tuple[str, re.Pattern[str], Callable[..., dict[str, Any]]]] = []


def route(method: str, path: str) -> Callable[[Handler], Handler]:
    def add(handler: Handler) -> Handler:
        ROUTES[(method, path)] = handler
        return handler

    return add


# Whole areas of MLflow that have no meaning over a Git repository.
UNSUPPORTED = (
    "traces",
    "unified-traces",
    "get-online-trace-details",
    "prompts",
    "prompt-optimization",
    "gateway",
    "workspaces",
    "issues",
    "label-schemas",
    "datasets",
    "scorers",
    "review-queues",
    "webhooks",
)

# MLflow endpoints that gitml answers with NOT_IMPLEMENTED, and why.
NOT_HERE = {
    ("POST", "registered-models/rename"): (
        "a registered model's name is its ref (refs/gitml/models/<name>), the file that "
        "declares it on every stage branch (models/<name>.yaml) and the name in models:/ "
        "URIs, and Git cannot move them together in one step: register its versions under "
        "the new name (models:/<old>/<n> as the source) and delete the old model"
    ),
    ("POST", "runs/log-model"): "MLflow 2's log-model record: log the model's files instead",
    ("GET", "metrics/get-history-bulk-interval"): "no sampled metric histories",
    ("POST", "artifacts/presigned-upload-url"): "no presigned URLs: artifacts are Git objects",
    ("POST", "artifacts/presigned-download-url"): "no presigned URLs: artifacts are Git objects",
}


# -- request fields ----------------------------------------------------------------------


def _str(body: Body, name: str, *, required: bool = True) -> str:
    value = body.get(name)
    if isinstance(value, list):  # a GET's repeated query parameter
        value = value[0] if value else None
    if value is None or value == "":
        if required:
            raise MlflowApiError("INVALID_PARAMETER_VALUE", f"Missing value for parameter '{name}'")
        return ""
    if not isinstance(value, str):
        raise MlflowApiError(
            "INVALID_PARAMETER_VALUE", f"Parameter '{name}' must be a string, got {value!r}"
        )
    return value


def _int(body: Body, name: str, default: int | None = None) -> int | None:
    value = body.get(name)
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None or value == "":
        return default
    # Proto-JSON writes 64-bit integers as strings; MLflow's client, as numbers.
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MlflowApiError(
            "INVALID_PARAMETER_VALUE", f"Parameter '{name}' must be an integer, got {value!r}"
        )
    return value


def _list(body: Body, name: str) -> list[Any]:
    value = body.get(name)
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _pairs(body: Body, name: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in _list(body, name):
        if not isinstance(item, Mapping) or "key" not in item:
            raise MlflowApiError(
                "INVALID_PARAMETER_VALUE", f"'{name}' entries are {{'key', 'value'}}, got {item!r}"
            )
        out[str(item["key"])] = "" if item.get("value") is None else str(item["value"])
    return out


def _tags_json(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in sorted(tags.items())]


# -- the API ----------------------------------------------------------------------------


@dataclass
class MlflowApi:
    """MLflow's REST API over one gitml repository.

    ``artifact_root`` is what artifact URIs start with: ``mlflow-artifacts:``
    behind ``gitml server`` (the proxied artifact API), the plugin's own
    scheme in process.
    """

    client: Client
    registry: Registry
    artifact_root: str = "mlflow-artifacts:"

    @classmethod
    def over(cls, client: Client, artifact_root: str = "mlflow-artifacts:") -> MlflowApi:
        return cls(client, Registry(client), artifact_root)

    @property
    def stages(self) -> Stages:
        return Stages(self.registry, self.client.config)

    def handle(self, method: str, path: str, body: Body) -> dict[str, Any]:
        """MLflow's answer to ``method path`` (``path`` below ``/api/2.0/mlflow/``)."""
        path = path.strip("/")
        try:
            handler = ROUTES.get((method, path))
            if handler is not None:
                return handler(self, body)
            for wanted, pattern, func in PATTERN_ROUTES:
                match = pattern.fullmatch(path)
                if match is not None and wanted == method:
                    return func(self, body, *match.groups())
        except GitmlError as exc:
            raise _translate(exc) from exc
        reason = NOT_HERE.get((method, path))
        if reason is not None:
            raise MlflowApiError("NOT_IMPLEMENTED", f"{method} /api/2.0/mlflow/{path}: {reason}")
        area = path.split("/", 1)[0]
        if area in UNSUPPORTED:
            raise MlflowApiError(
                "NOT_IMPLEMENTED",
                f"{method} /api/2.0/mlflow/{path}: gitml does not implement MLflow's {area}",
            )
        raise MlflowApiError(
            "ENDPOINT_NOT_FOUND", f"{method} /api/2.0/mlflow/{path}: no such MLflow endpoint"
        )

    # -- views --------------------------------------------------------------------

    def experiment_json(self, exp: Experiment) -> dict[str, Any]:
        return {
            "experiment_id": exp.id,
            "name": exp.name,
            "artifact_location": f"{self.artifact_root}/{exp.id}",
            "lifecycle_stage": exp.lifecycle_stage,
            "creation_time": exp.creation_time,
            "last_update_time": exp.last_update_time or exp.creation_time,
            "tags": _tags_json(exp.tags),
        }

    def run_artifact_uri(self, run: Run) -> str:
        return f"{self.artifact_root}/{run.experiment_id}/{run.id}/artifacts"

    def run_json(self, run: Run) -> dict[str, Any]:
        info: dict[str, Any] = {
            "run_id": run.id,
            "run_uuid": run.id,
            "run_name": run.name,
            "experiment_id": run.experiment_id,
            "user_id": run.user,
            "status": run.status,
            "start_time": run.start_time,
            "artifact_uri": self.run_artifact_uri(run),
            "lifecycle_stage": run.lifecycle_stage,
        }
        if run.end_time is not None:
            info["end_time"] = run.end_time
        metrics = [
            {
                "key": key,
                "value": metric_to_json(m.value),
                "timestamp": m.timestamp,
                "step": m.step,
            }
            for key, m in sorted(run.metrics.items())
        ]
        data = {
            "metrics": metrics,
            "params": [{"key": k, "value": v} for k, v in sorted(run.params.items())],
            "tags": _tags_json(run.data.tags),
        }
        return {"info": info, "data": data, "inputs": {}, "outputs": {}}

    # -- artifacts (the proxied artifact API) ----------------------------------------

    def artifact_location(self, path: str) -> tuple[Run, str]:
        """The run and artifact path that ``<experiment>/<run>/artifacts/<path>`` names."""
        parts = path.strip("/").split("/", 3)
        if len(parts) < 3 or parts[2] != "artifacts":
            raise MlflowApiError(
                "INVALID_PARAMETER_VALUE",
                f"artifact path '{path}' is not <experiment_id>/<run_id>/artifacts/<path>",
            )
        try:
            run = self.client.get_run(parts[1])
        except GitmlError as exc:
            raise _translate(exc) from exc
        if run.experiment_id != parts[0]:
            raise MlflowApiError(
                "RESOURCE_DOES_NOT_EXIST",
                f"run {run.id} is in experiment {run.experiment_id}, not {parts[0]}",
            )
        return run, parts[3] if len(parts) == 4 else ""

    def upload_artifact(self, path: str, data: bytes) -> None:
        run, rel = self.artifact_location(path)
        try:
            self.client.log_bytes(run.id, data, rel)
        except GitmlError as exc:
            raise _translate(exc) from exc

    def download_artifact(self, path: str) -> bytes:
        run, rel = self.artifact_location(path)
        try:
            return self.client.read_artifact(run.id, rel)
        except GitmlError as exc:
            raise _translate(exc) from exc

    def list_artifact_dir(self, path: str) -> list[dict[str, Any]]:
        """The files and folders directly below ``path``, as MLflow's ``FileInfo``s."""
        run, rel = self.artifact_location(path)
        return [
            {**entry, "path": entry["path"][len(rel) + 1 :] if rel else entry["path"]}
            for entry in self._listing(run.id, rel)
        ]

    def _listing(self, run_id: str, rel: str) -> list[dict[str, Any]]:
        """Direct children of ``rel`` (relative to the run's root), files with their size."""
        try:
            listed = self.client.list_artifacts(run_id, rel or None)
        except GitmlError as exc:
            raise _translate(exc) from exc
        prefix = f"{rel}/" if rel else ""
        seen: dict[str, dict[str, Any]] = {}
        for artifact in listed:
            if artifact.path == rel:
                return []  # a file: MLflow lists nothing below it
            name = artifact.path[len(prefix) :].split("/", 1)[0]
            if "/" in artifact.path[len(prefix) :]:
                seen.setdefault(name, {"path": prefix + name, "is_dir": True})
            else:
                seen[name] = {"path": prefix + name, "is_dir": False, "file_size": artifact.size}
        return [seen[name] for name in sorted(seen)]

    # -- registry views ------------------------------------------------------------

    def _stage_names(self) -> list[str]:
        names = []
        for ref in self.client.store.refs(layout.STAGES):
            name = ref[len(layout.STAGES) :]
            if "/" not in name:
                names.append(name)
        return sorted(names)

    def _declared(self, model: str) -> dict[str, int]:
        """Stage to the version it serves (a canary: the one taking most traffic)."""
        out: dict[str, int] = {}
        for stage in self._stage_names():
            declared = read_declaration(self.client.store, stage, model)
            if declared is not None:
                primary = max(declared.versions, key=lambda v: (v.weight, v.version))
                out[stage] = primary.version
        return out

    def _aliases(self, declared: Mapping[str, int], version: int | None = None) -> list[str]:
        archive = self.client.config.archive_stage
        return [
            stage
            for stage, number in declared.items()
            if stage != archive and (version is None or number == version)
        ]

    def version_json(
        self, version: ModelVersion, declared: Mapping[str, int] | None = None
    ) -> dict[str, Any]:
        if declared is None:
            declared = self._declared(version.name)
        current = next(
            (
                label
                for stage, label in MLFLOW_STAGES.items()
                if declared.get(stage) == version.version
            ),
            "None",
        )
        return {
            "name": version.name,
            "version": str(version.version),
            "creation_timestamp": version.creation_time,
            "last_updated_timestamp": version.creation_time,
            "user_id": version.user,
            "current_stage": current,
            "description": version.description or "",
            "source": version.source,
            "run_id": version.run_id,
            "status": "READY",
            "tags": _tags_json(version.tags),
            # No model_id: MLflow's client then loads a version from its download URI,
            # which every version has (one registered by gitml itself has no logged model).
            "aliases": self._aliases(declared, version.version),
        }

    def model_json(self, model: RegisteredModel) -> dict[str, Any]:
        declared = self._declared(model.name)
        versions = self.registry.versions(model.name)
        latest: dict[str, ModelVersion] = {}
        for version in versions:
            stage = self.version_json(version, declared)["current_stage"]
            latest[stage] = version
        out: dict[str, Any] = {
            "name": model.name,
            "creation_timestamp": model.creation_time,
            "last_updated_timestamp": max(
                [model.creation_time, *(v.creation_time for v in versions)]
            ),
            "tags": _tags_json(model.tags),
            "aliases": [
                {"alias": stage, "version": str(declared[stage])}
                for stage in self._aliases(declared)
            ],
            "latest_versions": [self.version_json(v, declared) for v in latest.values()],
        }
        if model.description:
            out["description"] = model.description
        return out

    def _live_version(self, name: str, version: str) -> ModelVersion:
        found = self.registry.get_version(name, version)
        if found.status == "DELETED":
            raise MlflowApiError(
                "RESOURCE_DOES_NOT_EXIST",
                f"Model Version (name={name}, version={version}) was deleted",
            )
        return found


def _one_experiment(api: MlflowApi, experiment_id: str) -> Experiment:
    try:
        return api.client.get_experiment(experiment_id)
    except NotFound:
        raise MlflowApiError(
            "RESOURCE_DOES_NOT_EXIST", f"No Experiment with id={experiment_id} exists"
        ) from None


def _one_run(api: MlflowApi, run_id: str) -> Run:
    try:
        return api.client.get_run(run_id)
    except NotFound:
        raise MlflowApiError("RESOURCE_DOES_NOT_EXIST", f"Run '{run_id}' not found") from None


def _run_id(body: Body) -> str:
    return _str(body, "run_id", required=False) or _str(body, "run_uuid")


# -- experiments ---------------------------------------------------------------------


@route("POST", "experiments/create")
def _create_experiment(api: MlflowApi, body: Body) -> dict[str, Any]:
    name = _str(body, "name")
    if api.client.get_experiment_by_name(name) is not None:
        raise MlflowApiError("RESOURCE_ALREADY_EXISTS", f"Experiment(name={name}) already exists.")
    if body.get("artifact_location"):
        raise MlflowApiError(
            "INVALID_PARAMETER_VALUE",
            "gitml keeps artifacts in the repository (or its artifact store): "
            "an experiment takes no artifact_location",
        )
    return {"experiment_id": api.client.create_experiment(name, _pairs(body, "tags"))}


@route("GET", "experiments/get")
def _get_experiment(api: MlflowApi, body: Body) -> dict[str, Any]:
    exp = _one_experiment(api, _str(body, "experiment_id"))
    return {"experiment": api.experiment_json(exp)}


@route("GET", "experiments/get-by-name")
def _get_experiment_by_name(api: MlflowApi, body: Body) -> dict[str, Any]:
    name = _str(body, "experiment_name")
    exp = api.client.get_experiment_by_name(name)
    if exp is None:
        raise MlflowApiError(
            "RESOURCE_DOES_NOT_EXIST", f"Could not find experiment with name '{name}'"
        )
    return {"experiment": api.experiment_json(exp)}


@route("POST", "experiments/search")
def _search_experiments(api: MlflowApi, body: Body) -> dict[str, Any]:
    view = _str(body, "view_type", required=False) or "ACTIVE_ONLY"
    wanted = {"ACTIVE_ONLY": {"active"}, "DELETED_ONLY": {"deleted"}, "ALL": {"active", "deleted"}}
    if view not in wanted:
        raise MlflowApiError("INVALID_PARAMETER_VALUE", f"Invalid view_type '{view}'")
    api.client.get_experiment("0")  # MLflow's stores always have the Default experiment
    found = [e for e in api.client.list_experiments() if e.lifecycle_stage in wanted[view]]
    found = _search_filter(found, _str(body, "filter", required=False))
    # MLflow's default order: newest first, then by id.
    found.sort(key=lambda e: (-e.creation_time, e.id))
    limit = _int(body, "max_results", 1000) or 1000
    return {"experiments": [api.experiment_json(e) for e in found[:limit]]}


@route("POST", "experiments/update")
def _rename_experiment(api: MlflowApi, body: Body) -> dict[str, Any]:
    experiment_id, name = _str(body, "experiment_id"), _str(body, "new_name")
    _one_experiment(api, experiment_id)
    try:
        api.client.rename_experiment(experiment_id, name)
    except Conflict:
        raise MlflowApiError(
            "RESOURCE_ALREADY_EXISTS", f"Experiment(name={name}) already exists."
        ) from None
    return {}


@route("POST", "experiments/delete")
def _delete_experiment(api: MlflowApi, body: Body) -> dict[str, Any]:
    api.client.delete_experiment(_one_experiment(api, _str(body, "experiment_id")).id)
    return {}


@route("POST", "experiments/restore")
def _restore_experiment(api: MlflowApi, body: Body) -> dict[str, Any]:
    api.client.restore_experiment(_one_experiment(api, _str(body, "experiment_id")).id)
    return {}


@route("POST", "experiments/set-experiment-tag")
def _set_experiment_tag(api: MlflowApi, body: Body) -> dict[str, Any]:
    experiment = _one_experiment(api, _str(body, "experiment_id"))
    key, value = _str(body, "key"), _str(body, "value", required=False)
    api.client.set_experiment_tag(experiment.id, key, value)
    return {}


@route("POST", "experiments/delete-experiment-tag")
def _delete_experiment_tag(api: MlflowApi, body: Body) -> dict[str, Any]:
    experiment = _one_experiment(api, _str(body, "experiment_id"))
    api.client.delete_experiment_tag(experiment.id, _str(body, "key"))
    return {}


def _search_filter(items: list[Any], text: str) -> list[Any]:
    """``items`` (experiments or registered models) that satisfy every term of ``text``:
    ``name`` or ``tags.<key>`` with ``=``, ``!=``, ``LIKE`` or ``ILIKE``, joined by AND.

    MLflow's client adds ``tags.`mlflow.prompt.is_prompt` != 'true'`` to every model
    search; no gitml model is a prompt.
    """
    if not text.strip():
        return items
    terms: list[tuple[str | None, str, str]] = []  # (a tag's key, or None: the name; op; value)
    for term in _AND.split(text.strip()):
        by_name, by_tag = _EXPERIMENT_FILTER.match(term), _TAG_FILTER.match(term)
        if by_name is not None:
            terms.append((None, by_name.group(1).upper(), by_name.group(2).replace("''", "'")))
        elif by_tag is not None:
            key = by_tag.group(1) or by_tag.group(2)
            terms.append((key, by_tag.group(3).upper(), by_tag.group(4).replace("''", "'")))
        else:
            raise MlflowApiError(
                "INVALID_PARAMETER_VALUE",
                f"filter {text!r}: gitml's MLflow API searches by name and tags only "
                "(name = '...', name != '...', name LIKE '...', name ILIKE '...', "
                "tags.`key` = '...', joined by AND)",
            )
    return [
        item
        for item in items
        if all(
            _compare(item.name, op, value) if key is None else _tag(item.tags, key, op, value)
            for key, op, value in terms
        )
    ]


def _tag(tags: Mapping[str, str], key: str, op: str, value: str) -> bool:
    actual = tags.get(key)
    if actual is None:
        # MLflow's rule: a missing tag matches nothing, but for the one its client uses to
        # leave prompts out, which no model has unless it is a prompt.
        return key == _IS_PROMPT and (op, value) in (("!=", "true"), ("=", "false"))
    return _compare(actual, op, value)


def _compare(actual: str, op: str, value: str) -> bool:
    if op == "=":
        return actual == value
    if op == "!=":
        return actual != value
    pattern = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in value)
    flags = re.IGNORECASE | re.DOTALL if op == "ILIKE" else re.DOTALL
    return re.fullmatch(pattern, actual, flags) is not None


# -- runs ---------------------------------------------------------------------------


@route("POST", "runs/create")
def _create_run(api: MlflowApi, body: Body) -> dict[str, Any]:
    tags = _pairs(body, "tags")
    name = _str(body, "run_name", required=False) or tags.pop("mlflow.runName", "") or None
    tags.pop("mlflow.runName", None)
    parent = tags.pop("mlflow.parentRunId", None)
    user = _str(body, "user_id", required=False)
    if user and "mlflow.user" not in tags:
        tags["mlflow.user"] = user
    experiment_id = _str(body, "experiment_id", required=False) or "0"
    _one_experiment(api, experiment_id)
    run = api.client.create_run(
        experiment_id,
        run_name=name,
        start_time=_int(body, "start_time"),
        tags=tags,
        parent_run_id=parent,
        commit=True,
    )
    return {"run": api.run_json(run)}


@route("GET", "runs/get")
def _get_run(api: MlflowApi, body: Body) -> dict[str, Any]:
    return {"run": api.run_json(_one_run(api, _run_id(body)))}


@route("POST", "runs/update")
def _update_run(api: MlflowApi, body: Body) -> dict[str, Any]:
    run_id = _run_id(body)
    _one_run(api, run_id)
    status = _str(body, "status", required=False) or None
    name = _str(body, "run_name", required=False) or None
    end_time = _int(body, "end_time")
    if status in ("FINISHED", "FAILED", "KILLED"):
        if name is not None:
            api.client.update_run(run_id, name=name)
        api.client.set_terminated(run_id, status, end_time)
    else:
        api.client.update_run(run_id, status=status, name=name)
    return {"run_info": api.run_json(_one_run(api, run_id))["info"]}


@route("POST", "runs/delete")
def _delete_run(api: MlflowApi, body: Body) -> dict[str, Any]:
    api.client.delete_run(_one_run(api, _run_id(body)).id)
    return {}


@route("POST", "runs/restore")
def _restore_run(api: MlflowApi, body: Body) -> dict[str, Any]:
    api.client.restore_run(_one_run(api, _run_id(body)).id)
    return {}


def _point(item: Any) -> tuple[str, Latest]:
    """One metric of a request, validated as ``Client.log_metric`` validates it."""
    if not isinstance(item, Mapping):
        raise MlflowApiError("INVALID_PARAMETER_VALUE", f"a metric is an object, got {item!r}")
    key = _str(item, "key")
    value = metric_from_json(item.get("value"))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MlflowApiError(
            "INVALID_PARAMETER_VALUE",
            f"Got invalid value {item.get('value')!r} for metric '{key}' "
            "(a number, or 'NaN', 'Infinity', '-Infinity')",
        )
    step, timestamp = item.get("step", 0), item.get("timestamp", 0)
    # Proto-JSON writes 64-bit integers as strings; MLflow's client, as numbers.
    if isinstance(step, str):
        step = _int(item, "step", 0)
    if isinstance(timestamp, str):
        timestamp = _int(item, "timestamp", 0)
    return key, checked_metric(key, float(value), step, timestamp)


def _log(
    api: MlflowApi,
    run_id: str,
    points: Iterable[Any],
    params: Mapping[str, str],
    tags: Mapping[str, str],
) -> None:
    """One commit, made before this returns; ``mlflow.runName`` renames the run, as in
    MLflow. Nothing is written when any value is refused."""
    run = _one_run(api, run_id)
    if run.lifecycle_stage == "deleted":
        raise MlflowApiError(
            "INVALID_PARAMETER_VALUE",
            f"The run {run_id} must be in the 'active' state. Current state is deleted.",
        )
    checked = [_point(item) for item in points]
    validation.batch_size(len(checked), len(params), len(tags))
    for key, value in params.items():
        known = run.params.get(key)
        if known is not None and known != value:
            raise MlflowApiError(
                "INVALID_PARAMETER_VALUE",
                f"Changing param values is not allowed. Param with key='{key}' was already "
                f"logged with value='{known}' for run ID='{run_id}'. "
                f"Attempted logging new value '{value}'.",
            )
    rest = dict(tags)
    name = rest.pop("mlflow.runName", None)
    if name is not None:
        api.client.update_run(run_id, name=name)
    if checked or params or rest:
        # Synchronous, as MLflow's log_batch: one commit before this returns.
        points_out = [Metric(key, value, ts, step) for key, (step, ts, value) in checked]
        api.client.log_batch(run_id, points_out, params, rest, synchronous=True)


@route("POST", "runs/log-metric")
def _log_metric(api: MlflowApi, body: Body) -> dict[str, Any]:
    _log(api, _run_id(body), [body], {}, {})
    return {}


@route("POST", "runs/log-parameter")
def _log_param(api: MlflowApi, body: Body) -> dict[str, Any]:
    _log(api, _run_id(body), [], {_str(body, "key"): _str(body, "value", required=False)}, {})
    return {}


@route("POST", "runs/set-tag")
def _set_tag(api: MlflowApi, body: Body) -> dict[str, Any]:
    _log(api, _run_id(body), [], {}, {_str(body, "key"): _str(body, "value", required=False)})
    return {}


@route("POST", "runs/delete-tag")
def _delete_tag(api: MlflowApi, body: Body) -> dict[str, Any]:
    run_id, key = _run_id(body), _str(body, "key")
    if key not in _one_run(api, run_id).tags:
        raise MlflowApiError(
            "RESOURCE_DOES_NOT_EXIST", f"No tag with name: {key} in run with id {run_id}"
        )
    api.client.delete_tag(run_id, key)
    return {}


@route("POST", "runs/log-batch")
def _log_batch(api: MlflowApi, body: Body) -> dict[str, Any]:
    params = _list(body, "params")
    if len({p.get("key") for p in params if isinstance(p, Mapping)}) != len(params):
        raise MlflowApiError(
            "INVALID_PARAMETER_VALUE", "Duplicate parameter keys have been submitted"
        )
    _log(api, _run_id(body), _list(body, "metrics"), _pairs(body, "params"), _pairs(body, "tags"))
    return {}


@route("POST", "runs/log-inputs")
def _log_inputs(api: MlflowApi, body: Body) -> dict[str, Any]:
    # Datasets are not gitml records; the run must exist, as MLflow checks.
    _one_run(api, _run_id(body))
    return {}


@route("POST", "runs/outputs")
def _log_outputs(api: MlflowApi, body: Body) -> dict[str, Any]:
    # A logged model is already the run's own (its artifacts); nothing else to link.
    _one_run(api, _run_id(body))
    return {}


@route("POST", "runs/search")
def _search_runs(api: MlflowApi, body: Body) -> dict[str, Any]:
    ids = [str(e) for e in _list(body, "experiment_ids")]
    page = api.client.search_runs(
        ids,
        _str(body, "filter", required=False),
        _str(body, "run_view_type", required=False) or "ACTIVE_ONLY",
        _int(body, "max_results", 1000) or 1000,
        [str(o) for o in _list(body, "order_by")],
        _str(body, "page_token", required=False) or None,
    )
    out: dict[str, Any] = {"runs": [api.run_json(r) for r in page]}
    if page.token:
        out["next_page_token"] = page.token
    return out


@route("GET", "metrics/get-history")
def _metric_history(api: MlflowApi, body: Body) -> dict[str, Any]:
    run_id, key = _run_id(body), _str(body, "metric_key")
    run = _one_run(api, run_id)
    if key not in run.metrics:
        return {"metrics": []}
    points = api.client.get_metric_history(run_id, key)
    return {
        "metrics": [
            {"key": key, "value": metric_to_json(p.value), "timestamp": p.timestamp, "step": p.step}
            for p in points
        ]
    }


@route("GET", "artifacts/list")
def _list_artifacts(api: MlflowApi, body: Body) -> dict[str, Any]:
    run = _one_run(api, _run_id(body))
    rel = artifact_paths.clean_path(_str(body, "path", required=False) or ".").strip(".")
    return {"root_uri": api.run_artifact_uri(run), "files": api._listing(run.id, rel)}


# -- logged models (MLflow 3): a model folder in its run's artifacts ---------------------


def _logged_model_run(api: MlflowApi, model_id: str) -> Run:
    match = _LOGGED_MODEL_ID.match(model_id)
    run = None
    if match is not None:
        try:
            run = api.client.get_run(match.group(1))
        except NotFound:
            run = None
    if run is None or LOGGED_MODEL_TAG not in run.tags:
        raise MlflowApiError(
            "RESOURCE_DOES_NOT_EXIST", f"Logged model with ID '{model_id}' not found."
        )
    return run


def _logged_model_json(api: MlflowApi, run: Run) -> dict[str, Any]:
    name = run.tags[LOGGED_MODEL_TAG]
    ready = any(a.path == f"{name}/MLmodel" for a in api.client.list_artifacts(run.id, name))
    tags = _prefixed(run.tags, LOGGED_MODEL_TAGS)
    # MLflow's client gives a model logged in a run the run's params too.
    params = {**run.params, **_prefixed(run.tags, LOGGED_MODEL_PARAMS)}
    info = {
        "model_id": f"m-{run.id}",
        "experiment_id": run.experiment_id,
        "name": name,
        "creation_timestamp_ms": run.start_time,
        "last_updated_timestamp_ms": run.end_time or run.start_time,
        "artifact_uri": f"{api.run_artifact_uri(run)}/{name}",
        "status": "LOGGED_MODEL_READY" if ready else "LOGGED_MODEL_PENDING",
        "source_run_id": run.id,
        "tags": _tags_json(tags),
    }
    data = {"params": _tags_json(params), "metrics": []}
    return {"model": {"info": info, "data": data}}


def _prefixed(tags: Mapping[str, str], prefix: str) -> dict[str, str]:
    return {k[len(prefix) :]: v for k, v in tags.items() if k.startswith(prefix)}


def _logged_model_values(run: Run, body: Body) -> dict[str, str]:
    """The run tags that keep the ``tags`` and ``params`` a request gives a logged model
    (params the run has already, with the same value, are read from the run)."""
    values = {LOGGED_MODEL_TAGS + k: v for k, v in _pairs(body, "tags").items()}
    for key, value in _pairs(body, "params").items():
        if run.params.get(key) != value:
            values[LOGGED_MODEL_PARAMS + key] = value
    return values


@route("POST", "logged-models")
def _create_logged_model(api: MlflowApi, body: Body) -> dict[str, Any]:
    run_id = _str(body, "source_run_id", required=False)
    if not run_id:
        raise MlflowApiError(
            "INVALID_PARAMETER_VALUE",
            "gitml keeps a model's files in the run that logs it: log the model inside a run "
            "(mlflow.start_run())",
        )
    name = artifact_paths.clean_path(_str(body, "name"))
    run = _one_run(api, run_id)
    logged = run.tags.get(LOGGED_MODEL_TAG)
    if logged is not None and logged != name:
        raise MlflowApiError(
            "INVALID_PARAMETER_VALUE",
            f"run {run_id} has logged the model '{logged}' already; gitml keeps one logged "
            f"model a run (log '{name}' in a run of its own)",
        )
    _log(api, run_id, [], {}, {LOGGED_MODEL_TAG: name, **_logged_model_values(run, body)})
    return _logged_model_json(api, _one_run(api, run_id))


@route("POST", "logged-models/search")
def _search_logged_models(api: MlflowApi, body: Body) -> dict[str, Any]:
    ids = [str(e) for e in _list(body, "experiment_ids")]
    page = api.client.search_runs(ids or None, f"tags.`{LOGGED_MODEL_TAG}` != ''")
    return {"models": [_logged_model_json(api, r)["model"] for r in page]}


def _get_logged_model(api: MlflowApi, body: Body, model_id: str) -> dict[str, Any]:
    return _logged_model_json(api, _logged_model_run(api, model_id))


def _finalize_logged_model(api: MlflowApi, body: Body, model_id: str) -> dict[str, Any]:
    # The run's manifest says whether the model's files are complete: nothing to record.
    return _logged_model_json(api, _logged_model_run(api, model_id))


def _set_logged_model_values(api: MlflowApi, body: Body, model_id: str) -> dict[str, Any]:
    """Tags (``PATCH .../tags``) or params (``POST .../params``) of a logged model."""
    run = _logged_model_run(api, model_id)
    _log(api, run.id, [], {}, _logged_model_values(run, body))
    return {}


def _delete_logged_model_tag(api: MlflowApi, body: Body, model_id: str, key: str) -> dict[str, Any]:
    run = _logged_model_run(api, model_id)
    if LOGGED_MODEL_TAGS + key not in run.tags:
        raise MlflowApiError(
            "RESOURCE_DOES_NOT_EXIST", f"No tag with key {key!r} on logged model {model_id}"
        )
    api.client.delete_tag(run.id, LOGGED_MODEL_TAGS + key)
    return {}


PATTERN_ROUTES.extend(
    [
        ("GET", re.compile(r"logged-models/([^/]+)"), _get_logged_model),
        ("PATCH", re.compile(r"logged-models/([^/]+)"), _finalize_logged_model),
        ("PATCH", re.compile(r"logged-models/([^/]+)/tags"), _set_logged_model_values),
        ("POST", re.compile(r"logged-models/([^/]+)/params"), _set_logged_model_values),
        ("DELETE", re.compile(r"logged-models/([^/]+)/tags/(.+)"), _delete_logged_model_tag),
    ]
)


# -- registered models and versions -------------------------------------------------


def _model_name(body: Body) -> str:
    return _str(body, "name")


def _one_model(api: MlflowApi, name: str) -> RegisteredModel:
    try:
        return api.registry.get_model(name)
    except NotFound:
        raise MlflowApiError(
            "RESOURCE_DOES_NOT_EXIST", f"Registered Model with name={name} not found"
        ) from None


@route("POST", "registered-models/create")
def _create_model(api: MlflowApi, body: Body) -> dict[str, Any]:
    name = _model_name(body)
    try:
        model = api.registry.create_model(
            name, _str(body, "description", required=False) or None, _pairs(body, "tags")
        )
    except Conflict:
        raise MlflowApiError(
            "RESOURCE_ALREADY_EXISTS", f"Registered Model (name={name}) already exists."
        ) from None
    return {"registered_model": api.model_json(model)}


@route("GET", "registered-models/get")
def _get_model(api: MlflowApi, body: Body) -> dict[str, Any]:
    return {"registered_model": api.model_json(_one_model(api, _model_name(body)))}


@route("GET", "registered-models/search")
def _search_models(api: MlflowApi, body: Body) -> dict[str, Any]:
    models = api.registry.list_models()
    text = _str(body, "filter", required=False)
    models = _search_filter(models, text)
    limit = _int(body, "max_results", 1000) or 1000
    return {"registered_models": [api.model_json(m) for m in models[:limit]]}


@route("DELETE", "registered-models/delete")
def _delete_model(api: MlflowApi, body: Body) -> dict[str, Any]:
    name = _model_name(body)
    _one_model(api, name)
    api.registry.delete_model(name)
    return {}


@route("PATCH", "registered-models/update")
def _update_model(api: MlflowApi, body: Body) -> dict[str, Any]:
    name = _model_name(body)
    _one_model(api, name)
    model = api.registry.update_model(name, description=_str(body, "description", required=False))
    return {"registered_model": api.model_json(model)}


@route("POST", "registered-models/set-tag")
def _set_model_tag(api: MlflowApi, body: Body) -> dict[str, Any]:
    name = _model_name(body)
    _one_model(api, name)
    api.registry.update_model(
        name, set_tags={_str(body, "key"): _str(body, "value", required=False)}
    )
    return {}


@route("DELETE", "registered-models/delete-tag")
def _delete_model_tag(api: MlflowApi, body: Body) -> dict[str, Any]:
    name = _model_name(body)
    _one_model(api, name)
    api.registry.update_model(name, delete_tags=[_str(body, "key")])
    return {}


@route("POST", "registered-models/get-latest-versions")
def _latest_versions(api: MlflowApi, body: Body) -> dict[str, Any]:
    name = _model_name(body)
    _one_model(api, name)
    wanted = {str(s).lower() for s in _list(body, "stages")}
    latest = api.model_json(api.registry.get_model(name))["latest_versions"]
    return {
        "model_versions": [v for v in latest if not wanted or v["current_stage"].lower() in wanted]
    }


ROUTES[("GET", "registered-models/get-latest-versions")] = _latest_versions


def _version_source(api: MlflowApi, body: Body) -> str:
    """The ``runs:/`` URI of the files a new version is made from."""
    model_id = _str(body, "model_id", required=False)
    source = _str(body, "source")
    found = _LOGGED_MODEL_ID.match(model_id) or _LOGGED_MODEL_ID.match(
        source.removeprefix("models:/")
    )
    if found is not None:
        run = _logged_model_run(api, found.group(0))
        return f"runs:/{run.id}/{run.tags[LOGGED_MODEL_TAG]}"
    if source.startswith(api.artifact_root + "/"):
        run, rel = api.artifact_location(source[len(api.artifact_root) + 1 :])
        return f"runs:/{run.id}/{rel}"
    return source


@route("POST", "model-versions/create")
def _create_version(api: MlflowApi, body: Body) -> dict[str, Any]:
    name = _model_name(body)
    version = api.registry.register(
        _version_source(api, body),
        name,
        description=_str(body, "description", required=False) or None,
        tags=_pairs(body, "tags"),
    )
    return {"model_version": api.version_json(version)}


@route("GET", "model-versions/get")
def _get_version(api: MlflowApi, body: Body) -> dict[str, Any]:
    version = api._live_version(_model_name(body), _str(body, "version"))
    return {"model_version": api.version_json(version)}


@route("PATCH", "model-versions/update")
def _update_version(api: MlflowApi, body: Body) -> dict[str, Any]:
    name, number = _model_name(body), _str(body, "version")
    api._live_version(name, number)
    version = api.registry.update_version(
        name, number, description=_str(body, "description", required=False)
    )
    return {"model_version": api.version_json(version)}


@route("DELETE", "model-versions/delete")
def _delete_version(api: MlflowApi, body: Body) -> dict[str, Any]:
    name, number = _model_name(body), _str(body, "version")
    api._live_version(name, number)
    api.registry.delete_version(name, number)
    return {}


@route("POST", "model-versions/set-tag")
def _set_version_tag(api: MlflowApi, body: Body) -> dict[str, Any]:
    name, number = _model_name(body), _str(body, "version")
    api._live_version(name, number)
    api.registry.update_version(
        name, number, set_tags={_str(body, "key"): _str(body, "value", required=False)}
    )
    return {}


@route("DELETE", "model-versions/delete-tag")
def _delete_version_tag(api: MlflowApi, body: Body) -> dict[str, Any]:
    name, number = _model_name(body), _str(body, "version")
    api._live_version(name, number)
    api.registry.update_version(name, number, delete_tags=[_str(body, "key")])
    return {}


@route("GET", "model-versions/get-download-uri")
def _download_uri(api: MlflowApi, body: Body) -> dict[str, Any]:
    version = api._live_version(_model_name(body), _str(body, "version"))
    run = _one_run(api, version.run_id)
    return {"artifact_uri": f"{api.run_artifact_uri(run)}/{version.model_path}"}


@route("GET", "model-versions/search")
def _search_versions(api: MlflowApi, body: Body) -> dict[str, Any]:
    text = _str(body, "filter", required=False)
    field, op, value = "name", "LIKE", "%"
    if text.strip():
        match = _MODEL_FILTER.match(text)
        if match is None:
            raise MlflowApiError(
                "INVALID_PARAMETER_VALUE",
                f"filter {text!r}: gitml's MLflow API searches versions by name or run_id "
                "(name = '...', name LIKE '...', run_id = '...')",
            )
        field, op, value = match.group(1).lower(), match.group(2).upper(), match.group(3)
    found = []
    for model in api.registry.list_models():
        if field == "name" and not _compare(model.name, op, value):
            continue
        declared = api._declared(model.name)
        for version in api.registry.versions(model.name):
            if field == "run_id" and not _compare(version.run_id, op, value):
                continue
            found.append(api.version_json(version, declared))
    # MLflow's default order: by name, newest version first.
    found.sort(key=lambda v: (v["name"], -int(v["version"])))
    limit = _int(body, "max_results", 10_000) or 10_000
    return {"model_versions": found[:limit]}


# -- stages and aliases: stage branches --------------------------------------------


def _alias(body: Body) -> str:
    return _str(body, "alias")


@route("POST", "registered-models/alias")
def _set_alias(api: MlflowApi, body: Body) -> dict[str, Any]:
    name, number = _model_name(body), _str(body, "version")
    _one_model(api, name)
    api._live_version(name, number)
    api.stages.assign(name, number, _alias(body))
    return {}


@route("DELETE", "registered-models/alias")
def _delete_alias(api: MlflowApi, body: Body) -> dict[str, Any]:
    name = _model_name(body)
    _one_model(api, name)
    api.stages.remove(name, _alias(body))
    return {}


@route("GET", "registered-models/alias")
def _get_by_alias(api: MlflowApi, body: Body) -> dict[str, Any]:
    name, alias = _model_name(body), _alias(body)
    _one_model(api, name)
    number = api._declared(name).get(alias)
    if number is None:
        raise MlflowApiError(
            "INVALID_PARAMETER_VALUE",
            f"Registered model alias {alias} not found (stage branch gitml/{alias} declares "
            f"no version of '{name}').",
        )
    return {"model_version": api.version_json(api.registry.get_version(name, number))}


@route("POST", "model-versions/transition-stage")
def _transition(api: MlflowApi, body: Body) -> dict[str, Any]:
    name, number = _model_name(body), _str(body, "version")
    version = api._live_version(name, number)
    label = _str(body, "stage")
    stage = label.lower()
    archive = bool(body.get("archive_existing_versions"))
    if stage == "none":
        for declared_stage, served in api._declared(name).items():
            if declared_stage in MLFLOW_STAGES and served == version.version:
                api.stages.remove(name, declared_stage)
    elif stage in MLFLOW_STAGES:
        api.stages.assign(name, version.version, stage, archive_existing=archive)
    else:
        raise MlflowApiError(
            "INVALID_PARAMETER_VALUE",
            f"Invalid Model Version stage: {label}. Value must be one of None, Staging, "
            "Production, Archived.",
        )
    return {"model_version": api.version_json(api.registry.get_version(name, number))}
