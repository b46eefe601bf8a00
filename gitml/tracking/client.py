"""``gitml.Client``: explicit control over experiments, runs, metrics and artifacts.

What ``MlflowClient`` is to MLflow users: the fluent API is built on it, and it
is the tool for imports, backfills and tests. The client validates every
value once and hands it to its backend (``gitml.tracking.backend``): a Git
repository (``GitBackend``), or a ``gitml server`` for an ``http(s)://``
tracking URI (``HttpBackend``). Both behave the same; what needs the
repository itself (``store``, ``config``, ``index``, the registry) needs a
local one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitml.artifacts import folder as local_files
from gitml.errors import InvalidInput, InvalidRecord, NotFound
from gitml.format import paths as artifact_paths
from gitml.format.records import TERMINAL_STATUSES, Artifact, Experiment, Run
from gitml.git.store import Clock
from gitml.tracking import validation
from gitml.tracking.backend import (
    ArtifactSource,
    Batch,
    ExperimentChange,
    NewRun,
    Point,
    RunQuery,
    TrackingBackend,
)
from gitml.tracking.entities import Metric, Param, RunTag
from gitml.tracking.git_backend import (
    DEFAULT_EXPERIMENT_ID as DEFAULT_EXPERIMENT_ID,
)
from gitml.tracking.git_backend import (
    DEFAULT_EXPERIMENT_NAME as DEFAULT_EXPERIMENT_NAME,
)
from gitml.tracking.git_backend import GitBackend
from gitml.tracking.uri import is_remote
from gitml.tracking.writer import checked_metric

if TYPE_CHECKING:
    from gitml.format.records import Config
    from gitml.git.store import Store
    from gitml.query.index import QueryIndex
    from gitml.query.search import RunPage


class NeedsRepository(InvalidInput, AttributeError):
    """A local repository's part (``store``, ``config``, ``index``) asked of a client of a server.

    Also an ``AttributeError``, so ``hasattr`` and ``getattr(x, name, default)`` work.
    """


class Client:
    """Read and write runs and experiments in one Git repository, or through a gitml server.

    ``Client(uri)`` with an ``http(s)://`` URI (given, or from
    ``GITML_TRACKING_URI``) logs to a ``gitml server``; any other URI (or
    none: the repository you stand in) is a repository. ``backend`` gives the
    backend itself.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        *,
        clock: Clock | None = None,
        identity: str | None = None,
        backend: TrackingBackend | None = None,
    ) -> None:
        if backend is None:
            uri = tracking_uri or os.environ.get("GITML_TRACKING_URI")
            if uri is not None and is_remote(uri):
                # Imported here: the HTTP client library costs a local client's start-up.
                from gitml.tracking.http_backend import HttpBackend

                backend = HttpBackend(uri, clock=clock)
            else:
                backend = GitBackend(tracking_uri, clock=clock, identity=identity)
        self.backend = backend

    # -- what the backend is --------------------------------------------------

    @property
    def remote(self) -> bool:
        """True for a client of a gitml server: there is no local store or index."""
        return self.backend.remote

    @property
    def recovered(self) -> list[str]:
        """What was done with journals left by processes that died (at start and on flush)."""
        return self.backend.recovered

    @property
    def journal_dir(self) -> Path:
        return self.backend.journal_dir

    @property
    def git(self) -> GitBackend:
        """The repository backend; ``NeedsRepository`` for a client of a server."""
        return self._local("git")

    @property
    def store(self) -> Store:
        return self._local("store").store

    @property
    def config(self) -> Config:
        return self._local("config").config

    @property
    def index(self) -> QueryIndex:
        """The query index of the repository (``.git/gitml/index.sqlite``)."""
        return self._local("index").index

    def _local(self, what: str) -> GitBackend:
        if not isinstance(self.backend, GitBackend):
            raise NeedsRepository(
                f"'{what}' needs a local repository; the tracking URI {self.backend.location} "
                "is a gitml server (use a path to a repository for this)"
            )
        return self.backend

    def now(self) -> int:
        """The time in milliseconds, from the client's clock (as runs record it)."""
        return self.backend.now()

    # -- experiments ------------------------------------------------------

    def create_experiment(self, name: str, tags: Mapping[str, Any] | None = None) -> str:
        """A new experiment; its id is derived from the name, so two machines agree on it."""
        return self.backend.create_experiment(
            validation.experiment_name(name), validation.tags(tags or {})
        )

    def get_experiment(self, experiment_id: str) -> Experiment:
        return self.backend.get_experiment(experiment_id)

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        # A malformed record has no name to trust: it matches none.
        return next((e for e in self.list_experiments(problems=[]) if e.name == name), None)

    def list_experiments(self, problems: list[InvalidRecord] | None = None) -> list[Experiment]:
        """Every experiment, by id; a malformed record raises ``InvalidRecord``, or, given
        ``problems``, is skipped and added there (a listing shows the rest)."""
        return self.backend.list_experiments(problems)

    def get_or_create_experiment_id(self, name_or_id: str | None) -> str:
        """The id of an experiment named by id or name, creating it by name if needed
        (None: the default experiment)."""
        return self.backend.get_or_create_experiment_id(name_or_id)

    def find_experiment_id(self, name_or_id: str) -> str:
        """An existing experiment's id, from its id or its name (never creates one)."""
        return self.backend.find_experiment_id(name_or_id)

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        """Give an experiment another name; its id, and so its runs, stay."""
        change = ExperimentChange(name=validation.experiment_name(new_name))
        self.backend.update_experiment(experiment_id, change)

    def set_experiment_tag(self, experiment_id: str, key: str, value: Any) -> None:
        change = ExperimentChange(set_tags=validation.tags({key: value}))
        self.backend.update_experiment(experiment_id, change)

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        """Remove a tag from an experiment; as in MLflow, a missing tag is an error."""
        self.backend.update_experiment(experiment_id, ExperimentChange(delete_tags=(key,)))

    def delete_experiment(self, experiment_id: str) -> None:
        """Mark an experiment and its runs deleted, as MLflow does: searches leave them out
        unless asked for deleted ones, and ``restore_experiment`` brings both back."""
        self._set_experiment_lifecycle(experiment_id, "deleted")

    def restore_experiment(self, experiment_id: str) -> None:
        """Make a deleted experiment active again, with every deleted run of it (MLflow's rule)."""
        self._set_experiment_lifecycle(experiment_id, "active")

    def _set_experiment_lifecycle(self, experiment_id: str, stage: str) -> None:
        from gitml.query.search import MAX_RESULTS

        experiment = self.get_experiment(experiment_id)
        if stage == "deleted" and experiment_id == DEFAULT_EXPERIMENT_ID:
            raise InvalidInput(
                f"the default experiment '{DEFAULT_EXPERIMENT_ID}' cannot be deleted "
                "(runs that name no experiment go there)"
            )
        if experiment.lifecycle_stage == stage:
            wanted = "active" if stage == "deleted" else "deleted"
            raise NotFound(f"experiment '{experiment.name}' ({experiment_id}) is not {wanted}")
        # Each run is a ref of its own, and Git changes refs one at a time: the runs go
        # first and the experiment last, so a change cut short is finished by asking again.
        view = "ACTIVE_ONLY" if stage == "deleted" else "DELETED_ONLY"
        run_ids: list[str] = []
        token: str | None = None
        while True:
            page = self.search_runs([experiment_id], "", view, MAX_RESULTS, page_token=token)
            run_ids.extend(run.id for run in page)
            token = page.token
            if not token:
                break
        for run_id in run_ids:
            self.backend.set_lifecycle(run_id, stage)
        self.backend.update_experiment(experiment_id, ExperimentChange(lifecycle_stage=stage))

    def import_experiment(self, experiment: Experiment) -> bool:
        """Write an experiment recorded elsewhere (an MLflow store) with its own id and times;
        False when this repository already holds it exactly so."""
        return self.git.import_experiment(experiment)

    # -- runs ---------------------------------------------------------------

    def create_run(
        self,
        experiment_id: str | None = None,
        run_name: str | None = None,
        start_time: int | None = None,
        tags: Mapping[str, Any] | None = None,
        *,
        parent_run_id: str | None = None,
        entry_point: str | None = None,
        commit: bool = False,
    ) -> Run:
        """Start a run whose first commit has the code (or its dirty snapshot) as parent.

        The new run is journaled, and its first commit is made with the first
        flush (``set_terminated``, a read of it, or ``flush_interval`` seconds),
        so that a short run is one commit. Every gitml reader of the repository
        sees it at once all the same: one in another process commits its start
        first (``GitBackend._commit_journaled``). ``commit=True`` commits it now,
        for git's own commands (``git push``, ``for-each-ref``); a server always
        creates it at once.
        """
        new = NewRun(
            experiment_id,
            validation.run_name(run_name) if run_name is not None else None,
            None if start_time is None else validation.timestamp("start", start_time),
            validation.tags(tags or {}),
            parent_run_id,
            entry_point,
            commit,
        )
        return self.backend.create_run(new)

    def get_run(self, run_id: str) -> Run:
        return self.backend.get_run(run_id)

    def search_runs(
        self,
        experiment_ids: Sequence[str] | None = None,
        filter_string: str | None = "",
        run_view_type: str = "ACTIVE_ONLY",
        max_results: int = 1000,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> RunPage:
        """Runs matching an MLflow filter string (with OR and parentheses too).

        ``experiment_ids`` None searches every experiment; names are accepted
        too. The result is a list with ``.token`` for the next page.
        """
        query = RunQuery(
            experiment_ids,
            filter_string or "",
            str(run_view_type).upper(),
            max_results,
            order_by,
            page_token,
        )
        return self.backend.search_runs(query)

    def run_counts(self) -> dict[str, dict[str, int]]:
        """Experiment id to its number of ``active`` and ``deleted`` runs."""
        return self.backend.run_counts()

    def broken_records(self) -> list[str]:
        """Why the index skipped run records that failed validation, one line each."""
        return self.backend.broken_records()

    def list_runs(
        self, experiment_ids: Iterable[str] | None = None, *, include_deleted: bool = False
    ) -> tuple[list[Run], list[InvalidRecord]]:
        """Every run (newest first) and, separately, every record that failed validation.

        A malformed record (say, fetched from a remote) is reported, never fatal.
        """
        wanted = None if experiment_ids is None else list(experiment_ids)
        return self.backend.list_runs(wanted, include_deleted)

    def resolve_run_id(self, prefix: str) -> str:
        """A full run id from a unique prefix, as git resolves short hashes."""
        return self.backend.resolve_run_id(prefix)

    def get_child_runs(self, run_id: str, run_view_type: str = "ACTIVE_ONLY") -> list[Run]:
        """The runs started as children (nested runs) of ``run_id``, newest first."""
        return self.backend.get_child_runs(run_id, run_view_type)

    # -- logging ------------------------------------------------------------

    def log_metric(
        self, run_id: str, key: str, value: float, timestamp: int | None = None, step: int = 0
    ) -> None:
        """Buffer one point (journaled before this returns); stored at the next flush."""
        point = checked_metric(key, value, step, self.now() if timestamp is None else timestamp)
        self.backend.log_batch(run_id, Batch([(key, point)], {}, {}))

    def log_param(self, run_id: str, key: str, value: Any) -> Any:
        validation.key("param", key)
        self.backend.log_batch(run_id, Batch((), validation.params({key: value}), {}))
        return value

    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        self.backend.log_batch(run_id, Batch((), {}, validation.tags({key: value})))

    def log_batch(
        self,
        run_id: str,
        metrics: Iterable[Metric] = (),
        params: Mapping[str, Any] | Iterable[Param] = (),
        tags: Mapping[str, Any] | Iterable[RunTag] = (),
        *,
        synchronous: bool = True,
        batch_id: str | None = None,
    ) -> None:
        """Log many values at once; validated as a whole before anything is written.

        With ``synchronous`` (the default, as in MLflow) the batch is stored
        before this returns; otherwise it joins the buffer. A ``batch_id``
        (which implies ``synchronous``) is stored with the values, in the same
        commit, so whoever applies batches can tell one sent again.
        """
        metric_list = list(metrics)
        param_pairs = _pairs(params, Param)
        tag_pairs = _pairs(tags, RunTag)
        validation.batch_size(len(metric_list), len(param_pairs), len(tag_pairs))
        validation.unique("param", (k for k, _ in param_pairs))
        validation.unique("tag", (k for k, _ in tag_pairs))
        checked: list[tuple[str, Point]] = []
        for m in metric_list:
            if not isinstance(m, Metric):
                raise InvalidInput(f"log_batch metrics must be gitml.Metric values, got {m!r}")
            checked.append((m.key, checked_metric(m.key, m.value, m.step, m.timestamp)))
        param_values = validation.params(dict(param_pairs))
        tag_values = validation.tags(dict(tag_pairs))
        synchronous = synchronous or batch_id is not None
        self.backend.log_batch(
            run_id, Batch(checked, param_values, tag_values, synchronous, batch_id)
        )

    def set_terminated(
        self, run_id: str, status: str = "FINISHED", end_time: int | None = None
    ) -> None:
        """End a run: buffered data, status and end time stored together."""
        if status not in TERMINAL_STATUSES:
            raise InvalidInput(
                f"status must be one of {', '.join(TERMINAL_STATUSES)}, got {status!r}"
            )
        when = self.now() if end_time is None else validation.timestamp("end", end_time)
        self.backend.set_terminated(run_id, status, when)

    def update_run(self, run_id: str, status: str | None = None, name: str | None = None) -> None:
        """Rename a run or set its status (RUNNING again when a run is resumed)."""
        if status is not None and status not in ("RUNNING", "SCHEDULED", *TERMINAL_STATUSES):
            raise InvalidInput(f"unknown run status {status!r}")
        new_name = validation.run_name(name) if name is not None else None
        self.backend.update_run(run_id, status, new_name)

    def delete_tag(self, run_id: str, key: str) -> None:
        """Remove a tag from a run; as in MLflow, a missing tag is an error."""
        self.backend.delete_tag(run_id, key)

    def delete_run(self, run_id: str) -> None:
        self.backend.set_lifecycle(run_id, "deleted")

    def restore_run(self, run_id: str) -> None:
        self.backend.set_lifecycle(run_id, "active")

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        """Every point of ``key``, ordered by step then timestamp."""
        return self.backend.get_metric_history(run_id, key)

    def import_run(
        self,
        run: Run,
        history: Mapping[str, Sequence[Metric]] | None = None,
        artifacts: Sequence[tuple[str, Path | bytes]] = (),
    ) -> None:
        """Write a run recorded elsewhere (an MLflow store), its id and times kept, as one
        commit: a reader sees it whole or not at all (see ``GitBackend.import_run``)."""
        self.git.import_run(run, history, artifacts)

    # -- artifacts ------------------------------------------------------------

    def log_artifact(
        self, run_id: str, local_path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        source = Path(local_path)
        if not source.is_file():
            raise InvalidInput(f"log_artifact: {source} is not a file")
        self._log_files(run_id, [(artifact_paths.join(artifact_path, source.name), source)])

    def log_artifacts(
        self, run_id: str, local_dir: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        root = Path(local_dir)
        if not root.is_dir():
            raise InvalidInput(f"log_artifacts: {root} is not a directory")
        self._log_files(run_id, local_files.folder_files(root, artifact_path))

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self._log_files(run_id, [(artifact_paths.clean_path(artifact_file), text.encode())])

    def log_dict(self, run_id: str, dictionary: Mapping[str, Any], artifact_file: str) -> None:
        """JSON for ``.json`` files, YAML otherwise (MLflow's rule)."""
        path = artifact_paths.clean_path(artifact_file)
        if path.endswith(".json"):
            data = json.dumps(dictionary, indent=2).encode()
        else:
            from gitml.format import yamlio

            data = yamlio.dump(dict(dictionary))
        self._log_files(run_id, [(path, data)])

    def log_bytes(self, run_id: str, data: bytes, artifact_file: str) -> None:
        self._log_files(run_id, [(artifact_paths.clean_path(artifact_file), data)])

    def _log_files(self, run_id: str, items: Sequence[ArtifactSource]) -> None:
        if items:
            self.backend.log_artifacts(run_id, items)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[Artifact]:
        """Manifest entries, all of them or those at or below ``path``."""
        clean = artifact_paths.clean_path(path) if path is not None else None
        return self.backend.list_artifacts(run_id, clean)

    def read_artifact(self, run_id: str, path: str) -> bytes:
        """The bytes of one artifact, checked against its sha256."""
        return self.backend.read_artifact(run_id, artifact_paths.clean_path(path))

    def download_artifacts(
        self, run_id: str, path: str, dst_path: str | os.PathLike[str] | None = None
    ) -> Path:
        """Copy one artifact, or every artifact below a folder, to ``dst_path``.

        ``path`` ``""`` is every artifact of the run, written below ``dst_path``
        itself (which is returned), as ``MlflowClient.download_artifacts`` does.
        """
        everything = path == ""
        chosen = self.list_artifacts(run_id, None if everything else path)
        if not chosen and not everything:
            raise NotFound(f"run {run_id} has no artifact '{path}'")
        dest_root = (
            Path(dst_path) if dst_path is not None else Path(tempfile.mkdtemp(prefix="gitml-"))
        )
        if everything:
            dest_root.mkdir(parents=True, exist_ok=True)
            for artifact in chosen:
                self.backend.download_artifact(run_id, artifact, dest_root / artifact.path)
            return dest_root
        base = artifact_paths.clean_path(path)
        single = len(chosen) == 1 and chosen[0].path == base
        for artifact in chosen:
            rel = (
                Path(artifact.path).name
                if single
                else Path(artifact.path).relative_to(Path(base).parent)
            )
            what = f"run {run_id} artifact '{artifact.path}'"
            target = artifact_paths.inside(dest_root, rel, what)
            self.backend.download_artifact(run_id, artifact, target)
        return dest_root / (Path(base).name)

    # -- code -----------------------------------------------------------------

    def restore_code(self, run_id: str, into: str | os.PathLike[str]) -> int:
        """Write the exact code a run used (its snapshot when dirty) into ``into``."""
        return self.backend.restore_code(run_id, into)

    # -- durability -------------------------------------------------------------

    def flush(self) -> None:
        """Store every buffered value of every run this client writes to."""
        self.backend.flush()

    def recover(self) -> list[str]:
        """Store what processes that died left in their journals; returns what was done."""
        return self.backend.recover()

    def close(self) -> None:
        """Store what is buffered and stop the background work (calls still work after)."""
        self.backend.close()


def _pairs(
    values: Mapping[str, Any] | Iterable[Param] | Iterable[RunTag], kind: type
) -> list[tuple[str, Any]]:
    if isinstance(values, Mapping):
        return list(values.items())
    out = []
    for item in values:
        if not isinstance(item, kind):
            raise InvalidInput(f"expected gitml.{kind.__name__} values, got {item!r}")
        out.append((item.key, item.value))
    return out
