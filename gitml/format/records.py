"""Pydantic models of every record gitml stores.

Each model has a hand-written JSON Schema in ``schemas/`` (the contract that
pre-commit hooks and other tools read); ``tests/test_records.py`` keeps the two
in agreement. Field order here is the canonical key order of the YAML files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from gitml.errors import InvalidInput, InvalidRecord
from gitml.format import yamlio
from gitml.format.layout import STAGE_NAME
from gitml.format.paths import stored_path

RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
TERMINAL_STATUSES = ("FINISHED", "FAILED", "KILLED")

RunStatus = Literal["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"]
LifecycleStage = Literal["active", "deleted"]

HEX40 = r"^[0-9a-f]{40}$"
RUN_ID = r"^[0-9a-f]{32}$"


def _integral(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# JSON Schema's "integer" is any number without a fraction, 2.0 included.
Integer = Annotated[int, BeforeValidator(_integral)]


def _unique(items: list[str]) -> list[str]:
    """JSON Schema's ``uniqueItems``."""
    if len(set(items)) != len(items):
        raise ValueError("items must be unique")
    return items


def _artifact_path(value: str) -> str:
    """A manifest path is written to disk below a destination on download: it must stay there."""
    try:
        return stored_path(value)
    except InvalidInput as exc:
        raise ValueError(str(exc)) from None


# The schemas' pattern for it says the same (``tests/test_records.py`` checks both).
ArtifactPath = Annotated[str, AfterValidator(_artifact_path)]


class Record(BaseModel):
    # Strict: the JSON Schemas accept no "5" for 5, no true for 1, no 1 for true,
    # and a record must mean the same to ``gitml validate`` and to the library.
    # defer_build: a model's validator is built on its first use, so a command
    # that reads runs does not pay for building the other records' (a whole
    # `gitml runs search` has 400 ms).
    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

    # Maps whose keys come from users are written sorted, so two writers of
    # the same content produce byte-identical files; fields keep model order.
    sorted_maps: ClassVar[tuple[str, ...]] = ()

    def to_yaml(self) -> bytes:
        return yamlio.dump(self.to_plain())

    def to_plain(self) -> dict[str, Any]:
        data = self.model_dump(mode="python")
        for name in self.sorted_maps:
            data[name] = dict(sorted(data[name].items()))
        return data


class Source(Record):
    """The code a run came from; ``snapshot`` is set when the work tree was dirty."""

    commit: str | None = Field(default=None, pattern=HEX40)
    snapshot: str | None = Field(default=None, pattern=HEX40)
    branch: str | None = None
    dirty: bool = False
    entry_point: str | None = None
    # Untracked files too large for the snapshot (the first 100 by path): when
    # any is named, restoring the code does not reproduce the run.
    omitted: Annotated[list[str], AfterValidator(_unique)] = Field(
        default_factory=list, max_length=100
    )


class MetricValue(Record):
    """The latest value of one metric (highest step, then latest timestamp)."""

    value: float
    step: Integer = Field(ge=0)
    timestamp: Integer = Field(ge=0)


class Run(Record):
    sorted_maps = ("params", "tags", "metrics")

    id: str = Field(pattern=RUN_ID)
    experiment_id: str = Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_-]+$")
    name: str = Field(min_length=1, max_length=250)
    status: RunStatus
    lifecycle_stage: LifecycleStage = "active"
    start_time: Integer = Field(ge=0)
    end_time: Integer | None = Field(default=None, ge=0)
    user: str
    parent_run_id: str | None = Field(default=None, pattern=RUN_ID)
    source: Source = Field(default_factory=Source)
    params: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, MetricValue] = Field(default_factory=dict)

    @property
    def run_id(self) -> str:
        """MLflow's name for ``id``."""
        return self.id

    @property
    def info(self) -> RunInfo:
        """MLflow's ``run.info`` view: ``run_id``, ``run_name``, ``status``, times..."""
        return RunInfo(
            run_id=self.id,
            experiment_id=self.experiment_id,
            run_name=self.name,
            user_id=self.user,
            status=self.status,
            start_time=self.start_time,
            end_time=self.end_time,
            lifecycle_stage=self.lifecycle_stage,
            artifact_uri=artifact_uri(self),
        )

    @property
    def data(self) -> RunData:
        """MLflow's ``run.data`` view: params, each metric's latest value, tags."""
        return RunData(
            params=dict(self.params),
            metrics={key: m.value for key, m in self.metrics.items()},
            tags={**system_tags(self), **self.tags},
        )


@dataclass(frozen=True)
class RunInfo:
    """``run.info``: MLflow's ``RunInfo`` fields, with MLflow's types (times in ms)."""

    run_id: str
    experiment_id: str
    run_name: str
    user_id: str
    status: str
    start_time: int
    end_time: int | None
    lifecycle_stage: str
    artifact_uri: str  # runs:/<run_id>/, the URI gitml resolves (MLflow: a storage location)


@dataclass(frozen=True)
class RunData:
    """``run.data``: MLflow's ``RunData``: params, the latest value of each metric, tags.

    ``tags`` holds the run's own tags and, unless the run set them itself, the
    ``mlflow.*`` system tags MLflow keeps its run name, user, parent and
    source in.
    """

    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]


def artifact_uri(run: Run) -> str:
    """The root of a run's artifacts as a URI gitml resolves (``runs:/<id>/<path>``)."""
    return f"runs:/{run.id}/"


def system_tags(run: Run) -> dict[str, str]:
    """The ``mlflow.*`` tags MLflow would have set on this run."""
    tags = {"mlflow.runName": run.name, "mlflow.user": run.user}
    if run.parent_run_id is not None:
        tags["mlflow.parentRunId"] = run.parent_run_id
    if run.source.commit is not None:
        tags["mlflow.source.git.commit"] = run.source.commit
    if run.source.branch is not None:
        tags["mlflow.source.git.branch"] = run.source.branch
    if run.source.entry_point is not None:
        tags["mlflow.source.name"] = run.source.entry_point
    return tags


class Artifact(Record):
    """One entry of a run's artifact manifest."""

    path: ArtifactPath = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: Integer = Field(ge=0)
    storage: Literal["git", "external"] = "git"


class ArtifactManifest(Record):
    artifacts: list[Artifact] = Field(default_factory=list)


class Experiment(Record):
    sorted_maps = ("tags",)

    id: str = Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_-]+$")
    name: str = Field(min_length=1, max_length=500)
    lifecycle_stage: LifecycleStage = "active"
    creation_time: Integer = Field(ge=0)
    # Set by every change after creation (a rename, a tag, a delete or a restore).
    last_update_time: Integer | None = Field(default=None, ge=0)
    tags: dict[str, str] = Field(default_factory=dict)


# A model name is one Git ref component: it names refs/gitml/models/<name>
# and stage files models/<name>.yaml, so it holds no "/" and no "..". (Git also
# refuses a trailing ".lock"; ``registry.check_name`` says so, as neither
# pydantic's regex engine nor a plain pattern can.)
MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$"
DIGEST = r"^sha256:[0-9a-f]{64}$"
StageName = Annotated[str, Field(pattern=STAGE_NAME)]
VersionStatus = Literal["READY", "DELETED"]


class RegisteredModel(Record):
    """``model.yaml`` on ``refs/gitml/models/<name>``."""

    sorted_maps = ("tags",)

    name: str = Field(max_length=200, pattern=MODEL_NAME)
    description: str | None = None
    creation_time: Integer = Field(ge=0)
    tags: dict[str, str] = Field(default_factory=dict)
    # DELETED: a tombstone that hides the model (and its versions, DELETED too)
    # from the registry while its ref keeps the history.
    status: VersionStatus = "READY"


class ModelVersion(Record):
    """``versions/<n>.yaml`` on ``refs/gitml/models/<name>``: one registered version.

    ``digest`` is over the model's files as the run's manifest lists them (see
    ``registry.model_digest``), so a changed file is caught without reading it.
    A deleted version keeps its file with status DELETED: numbers are never reused.
    """

    sorted_maps = ("tags",)

    name: str = Field(max_length=200, pattern=MODEL_NAME)
    version: Integer = Field(ge=1)
    source: str = Field(min_length=1)
    run_id: str = Field(pattern=RUN_ID)
    run_commit: str = Field(pattern=HEX40)
    model_path: ArtifactPath = Field(min_length=1)
    digest: str = Field(pattern=DIGEST)
    flavors: list[str] = Field(default_factory=list)
    signature: dict[str, str] = Field(default_factory=dict)
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    status: VersionStatus = "READY"
    user: str
    creation_time: Integer = Field(ge=0)


class ServedVersion(Record):
    """One version a stage declares, with its share of the traffic.

    ``digest`` is the version's digest when it was declared: a number alone
    can come to name another machine's version (two clones registered the
    same number offline, and a plain ``git push`` carried the stage but not
    the model), and a declaration must never serve another model. It is
    optional: declarations written before it existed mean their number.
    """

    version: Integer = Field(ge=1)
    weight: Integer = Field(default=100, ge=0, le=100)
    digest: str | None = Field(default=None, pattern=DIGEST)


class StageDeclaration(Record):
    """``models/<name>.yaml`` on branch ``gitml/<stage>``: what the stage serves.

    Weights must sum to 100 (checked by ``stages.check_declaration``, which
    can say which stage the rule applies to); one version at 100 is the
    common case, two make a canary.
    """

    model: str = Field(max_length=200, pattern=MODEL_NAME)
    versions: list[ServedVersion] = Field(min_length=1)
    note: str | None = None

    def to_plain(self) -> dict[str, Any]:
        data = super().to_plain()
        # A version declared without its digest is written back as it was read.
        for served in data["versions"]:
            if served["digest"] is None:
                del served["digest"]
        return data


class StagePolicy(Record):
    """What a version needs before a stage may declare it."""

    after: list[str] = Field(default_factory=list)
    metrics: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    authors: list[str] = Field(default_factory=list)


class Policy(Record):
    """``policy`` in ``.gitml.yaml``; ``ordered`` makes every stage need the one before it."""

    ordered: bool = False
    stages: dict[StageName, StagePolicy] = Field(default_factory=dict)


class Config(Record):
    """``.gitml.yaml``: per-project settings; every field has a working default."""

    experiment: str = Field(default="Default", min_length=1, max_length=500)
    artifact_store: str | None = None  # a folder, or s3://bucket/prefix
    artifact_endpoint_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+")
    artifact_threshold: Integer = Field(default=10 * 1024 * 1024, ge=0)
    flush_interval: float = Field(default=5.0, gt=0)
    flush_points: Integer = Field(default=50_000, ge=1)
    stages: Annotated[list[StageName], AfterValidator(_unique)] = Field(
        default_factory=lambda: ["staging", "production", "archived"], min_length=1
    )
    archive_stage: StageName | None = "archived"
    policy: Policy = Field(default_factory=Policy)


M = TypeVar("M", bound=Record)


def parse(model: type[M], data: bytes, *, where: str, path: str) -> M:
    """Parse and validate YAML bytes as ``model``; errors name where, file and field."""
    try:
        raw = yamlio.load(data)
    except Exception as exc:  # yaml raises many types; all mean "not YAML"
        raise InvalidRecord(where, path, "(document)", f"not valid YAML: {exc}") from None
    return validate(model, raw, where=where, path=path)


def validate(model: type[M], raw: Any, *, where: str, path: str) -> M:
    if not isinstance(raw, dict):
        raise InvalidRecord(where, path, "(document)", "expected a mapping at the top level")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(document)"
        # A validator's own message, without pydantic's "Value error, " in front.
        reason = str(err["ctx"]["error"]) if err["type"] == "value_error" else err["msg"]
        raise InvalidRecord(where, path, field, reason) from None


def latest(a: MetricValue | None, b: MetricValue) -> MetricValue:
    """MLflow's notion of a metric's latest value: max by (step, timestamp, value)."""
    if a is None:
        return b
    ka = (a.step, a.timestamp, _sortable(a.value))
    kb = (b.step, b.timestamp, _sortable(b.value))
    return b if kb >= ka else a


def _sortable(v: float) -> float:
    return -math.inf if math.isnan(v) else v
