"""The seam between ``Client`` and where runs are kept: a Git repository or a gitml server.

``Client`` validates every value once and hands it to its backend already
checked; a backend only stores. Its write primitive is ``log_batch`` (metrics,
params and tags of one run), from which ``Client`` derives ``log_metric``,
``log_param`` and ``set_tag``. Two backends implement it: ``GitBackend``
(``gitml.tracking.git_backend``), which commits to a repository through a
journal, and ``HttpBackend`` (``gitml.tracking.http_backend``), which sends
batches to a ``gitml server`` through a journal of its own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    from gitml.errors import InvalidRecord
    from gitml.format.records import Artifact, Experiment, Run
    from gitml.query.search import RunPage
    from gitml.tracking.entities import Metric

# (step, timestamp, value): one validated metric point.
Point = tuple[int, int, float]

# An artifact's path in the run and its content: a local file, or bytes.
ArtifactSource = tuple[str, "Path | bytes"]


class Batch(NamedTuple):
    """Validated values for one run: ``log_batch``'s argument.

    With ``synchronous`` they are in the store when ``log_batch`` returns,
    otherwise in the journal (and in the store at the next flush). A
    ``batch_id`` (given with ``synchronous``) is stored with the values in the
    same commit, so a batch sent again can be recognised.
    """

    metrics: Sequence[tuple[str, Point]]
    params: dict[str, str]
    tags: dict[str, str]
    synchronous: bool = False
    batch_id: str | None = None


class NewRun(NamedTuple):
    """A run to create, validated: ``create_run``'s argument.

    ``experiment_id`` is an id or a name (created if needed; None: the
    default experiment); ``name`` None gets a generated one, ``start_time``
    None the backend's clock. With ``commit`` False a repository only
    journals the run, and commits it with the first flush.
    """

    experiment_id: str | None
    name: str | None
    start_time: int | None
    tags: dict[str, str]
    parent_run_id: str | None = None
    entry_point: str | None = None
    commit: bool = True


class ExperimentChange(NamedTuple):
    """What ``update_experiment`` changes, validated (None and empty: leave it as it is).

    A deleted experiment takes no change but its restoring: MLflow refuses to
    rename or tag one too.
    """

    name: str | None = None
    lifecycle_stage: str | None = None  # "deleted" or "active"
    set_tags: Mapping[str, str] = MappingProxyType({})
    delete_tags: tuple[str, ...] = ()


class RunQuery(NamedTuple):
    """A search: ``search_runs``'s argument (``experiment_ids`` None: every experiment)."""

    experiment_ids: Sequence[str] | None
    filter_string: str = ""
    run_view_type: str = "ACTIVE_ONLY"
    max_results: int = 1000
    order_by: Sequence[str] | None = None
    page_token: str | None = None


class TrackingBackend(Protocol):
    """Where a ``Client`` keeps runs; every argument arrives validated."""

    @property
    def location(self) -> str:
        """The repository's path or the server's URL, for messages."""

    @property
    def remote(self) -> bool:
        """True when there is no local repository (a gitml server holds it)."""

    @property
    def journal_dir(self) -> Path:
        """Where logged values wait, durable, until the store has them."""

    @property
    def recovered(self) -> list[str]:
        """What was done with journals left by processes that died."""

    def now(self) -> int:
        """The time in milliseconds, from the backend's clock."""

    # -- experiments

    def create_experiment(self, name: str, tags: dict[str, str]) -> str: ...

    def get_experiment(self, experiment_id: str) -> Experiment: ...

    def list_experiments(self, problems: list[InvalidRecord] | None) -> list[Experiment]: ...

    def get_or_create_experiment_id(self, name_or_id: str | None) -> str: ...

    def find_experiment_id(self, name_or_id: str) -> str:
        """An existing experiment's id, from its id or its name (never creates one)."""

    def update_experiment(self, experiment_id: str, change: ExperimentChange) -> None:
        """One commit on the experiment's record (its runs are the ``Client``'s to change)."""

    # -- runs

    def create_run(self, new: NewRun) -> Run: ...

    def get_run(self, run_id: str) -> Run: ...

    def resolve_run_id(self, prefix: str) -> str: ...

    def search_runs(self, query: RunQuery) -> RunPage: ...

    def list_runs(
        self, experiment_ids: Sequence[str] | None, include_deleted: bool
    ) -> tuple[list[Run], list[InvalidRecord]]: ...

    def get_child_runs(self, run_id: str, run_view_type: str) -> list[Run]: ...

    def run_counts(self) -> dict[str, dict[str, int]]: ...

    def broken_records(self) -> list[str]: ...

    def log_batch(self, run_id: str, batch: Batch) -> None:
        """The write primitive: every logging call of ``Client`` is one batch."""

    def set_terminated(self, run_id: str, status: str, end_time: int) -> None: ...

    def update_run(self, run_id: str, status: str | None, name: str | None) -> None: ...

    def delete_tag(self, run_id: str, key: str) -> None: ...

    def set_lifecycle(self, run_id: str, stage: str) -> None:
        """``deleted`` or ``active``."""

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]: ...

    # -- artifacts

    def log_artifacts(self, run_id: str, items: Sequence[ArtifactSource]) -> None: ...

    def list_artifacts(self, run_id: str, path: str | None) -> list[Artifact]: ...

    def read_artifact(self, run_id: str, path: str) -> bytes: ...

    def download_artifact(self, run_id: str, artifact: Artifact, target: Path) -> None:
        """Write one artifact to ``target``, checked against its sha256."""

    def restore_code(self, run_id: str, into: str | os.PathLike[str]) -> int: ...

    # -- durability

    def flush(self) -> None: ...

    def recover(self) -> list[str]: ...

    def close(self) -> None: ...
