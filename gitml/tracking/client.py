"""``gitml.Client``: explicit control over experiments, runs, metrics and artifacts.

What ``MlflowClient`` is to MLflow users: the fluent API is built on it, and it
is the tool for imports, backfills and tests. Every run is the ref
``refs/gitml/runs/<id>``; every change to it is a commit made through
``Store.update`` (compare-and-swap, merged against whatever another writer
committed first).
"""

from __future__ import annotations

import atexit
import getpass
import hashlib
import json
import logging
import os
import sys
import tempfile
import threading
import uuid
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from typing_extensions import Self

from gitml.artifacts import folder as local_files
from gitml.artifacts import open_store
from gitml.errors import Conflict, GitmlError, InvalidInput, InvalidRecord, NotFound, RefBusy
from gitml.format import config as config_file
from gitml.format import paths as artifact_paths
from gitml.format.records import (
    TERMINAL_STATUSES,
    Artifact,
    ArtifactManifest,
    Experiment,
    MetricValue,
    Run,
    Source,
    latest,
    parse,
)
from gitml.git.store import BlobRef, Change, Clock, CodeVersion, Snapshot, Store
from gitml.tracking import journal, metrics, names, validation
from gitml.tracking.entities import Metric, Param, RunTag
from gitml.tracking.uri import is_remote, resolve_store
from gitml.tracking.writer import Files, Latest, Rejected, RunEdit, RunWriter, checked_metric

if TYPE_CHECKING:
    from gitml.query.index import QueryIndex
    from gitml.query.search import RunPage

log = logging.getLogger("gitml.tracking")

RUNS = "refs/gitml/runs/"
EXPERIMENTS = "refs/gitml/experiments/"
DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"
RUN_FILE = "run.yaml"
MANIFEST_FILE = "artifacts.yaml"
EXPERIMENT_FILE = "experiment.yaml"


class Client:
    """Read and write runs and experiments in one Git repository.

    ``Client(uri)`` with an ``http(s)://`` URI (given, or from
    ``GITML_TRACKING_URI``) builds a ``gitml.tracking.rest.RestClient``: a
    subclass with the same methods that logs to a ``gitml server``, so code
    written against ``gitml.Client`` (and ``isinstance`` checks) works with both.
    """

    remote = False  # True for RestClient: there is no local store or index

    def __new__(
        cls,
        tracking_uri: str | None = None,
        *,
        clock: Clock | None = None,
        identity: str | None = None,
    ) -> Self:
        if cls is Client and is_remote(tracking_uri or os.environ.get("GITML_TRACKING_URI")):
            from gitml.tracking.rest import RestClient

            return cast(Self, object.__new__(RestClient))
        return object.__new__(cls)

    def __init__(
        self,
        tracking_uri: str | None = None,
        *,
        clock: Clock | None = None,
        identity: str | None = None,
    ) -> None:
        self.store, self._work = resolve_store(tracking_uri, clock=clock, identity=identity)
        settings_root = self._work.root if self._work is not None else self.store.root
        self.config = config_file.load(settings_root)
        # A folder, or a bucket behind .git/gitml/artifacts (gitml.artifacts).
        self._external = open_store(self.config, settings_root, self.store.data_dir)
        self._lock = threading.RLock()
        self._writers: dict[str, RunWriter] = {}
        self._experiments: dict[str, Experiment] = {}
        self._experiment_ids: dict[str, str] = {}  # name or id -> id, as resolved before
        self._index: QueryIndex | None = None
        self._flusher: threading.Thread | None = None
        self._closed = threading.Event()
        self.recovered = self.recover()
        atexit.register(_close_at_exit, weakref.ref(self))
        _clients.add(self)

    @property
    def journal_dir(self) -> Path:
        return self.store.data_dir / "journal"

    def _now(self) -> int:
        return int(self.store.clock() * 1000)

    # -- experiments ------------------------------------------------------

    def create_experiment(self, name: str, tags: Mapping[str, Any] | None = None) -> str:
        """A new experiment; its id is derived from the name, so two machines agree on it."""
        validation.experiment_name(name)
        if self.get_experiment_by_name(name) is not None:
            raise Conflict(f"experiment '{name}' already exists")
        exp_id = (
            DEFAULT_EXPERIMENT_ID
            if name == DEFAULT_EXPERIMENT_NAME
            else hashlib.sha256(name.encode()).hexdigest()[:16]
        )
        tag_values = {
            validation.key("tag", k): validation.tag_value(k, v) for k, v in (tags or {}).items()
        }
        record = Experiment(id=exp_id, name=name, creation_time=self._now(), tags=tag_values)

        def edit(snap: Snapshot | None) -> Change | None:
            if snap is not None:
                existing = self._read_experiment(EXPERIMENTS + exp_id, snap)
                if existing.name == name:
                    return None  # another process created the same experiment first
                raise Conflict(f"experiment id {exp_id} is taken by '{existing.name}'")
            return Change({EXPERIMENT_FILE: record.to_yaml()})

        with self._lock:
            self.store.update(EXPERIMENTS + exp_id, edit, f"gitml: create experiment {name}")
        self._experiments.pop(exp_id, None)
        return exp_id

    def get_experiment(self, experiment_id: str) -> Experiment:
        if experiment_id not in self._experiments:
            tip = self.store.tip(EXPERIMENTS + experiment_id)
            if tip is None:
                if experiment_id == DEFAULT_EXPERIMENT_ID:
                    self.create_experiment(DEFAULT_EXPERIMENT_NAME)
                    return self.get_experiment(experiment_id)
                raise NotFound(f"no experiment with id '{experiment_id}'")
            self._experiments[experiment_id] = self._read_experiment(
                EXPERIMENTS + experiment_id, self.store.snapshot(tip)
            )
        return self._experiments[experiment_id]

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        # A malformed record has no name to trust: it matches none.
        for exp in self.list_experiments(problems=[]):
            if exp.name == name:
                return exp
        return None

    def list_experiments(self, problems: list[InvalidRecord] | None = None) -> list[Experiment]:
        """Every experiment, by id; a malformed record raises ``InvalidRecord``, or, given
        ``problems``, is skipped and added there (a listing shows the rest)."""
        out = []
        for ref, tip in sorted(self.store.refs(EXPERIMENTS).items()):
            try:
                out.append(self._read_experiment(ref, self.store.snapshot(tip)))
            except InvalidRecord as exc:
                if problems is None:
                    raise
                problems.append(exc)
        return out

    def _read_experiment(self, ref: str, snap: Snapshot) -> Experiment:
        data = snap.read(EXPERIMENT_FILE)
        if data is None:
            raise InvalidRecord(ref, EXPERIMENT_FILE, "(document)", "file is missing")
        return parse(Experiment, data, where=ref, path=EXPERIMENT_FILE)

    def experiment_id(self, name_or_id: str | None) -> str:
        """The id of an experiment named by id or name, creating it by name if needed."""
        wanted = name_or_id or self.config.experiment
        found = self._experiment_ids.get(wanted)
        if found is None:
            if wanted == DEFAULT_EXPERIMENT_ID or self.store.tip(EXPERIMENTS + wanted):
                found = wanted
            else:
                existing = self.get_experiment_by_name(wanted)
                found = existing.id if existing is not None else self.create_experiment(wanted)
            self._experiment_ids[wanted] = found
        return found

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
        commit: bool = True,
    ) -> Run:
        """Start a run whose first commit has the code (or its dirty snapshot) as parent.

        With ``commit=False`` the new run is only journaled, and its first
        commit is made with the first flush (as the fluent API does, so that a
        short run is one commit); other processes see it from then on.
        """
        exp_id = self.experiment_id(experiment_id)
        self.get_experiment(exp_id)
        tag_values = self._tags(tags or {})
        if parent_run_id is not None:
            self.get_run(parent_run_id)
        run_id = uuid.uuid4().hex
        code = self._code_version(run_id)
        run = Run(
            id=run_id,
            experiment_id=exp_id,
            name=validation.run_name(run_name) if run_name is not None else names.run_name(),
            status="RUNNING",
            start_time=self._now()
            if start_time is None
            else validation.timestamp("start", start_time),
            # MLflow's clients name the user in this tag, and its stores take it from there.
            user=tag_values.get("mlflow.user") or _user(),
            parent_run_id=parent_run_id,
            source=Source(
                commit=code.commit,
                snapshot=code.snapshot,
                branch=code.branch,
                dirty=code.dirty,
                entry_point=entry_point,
                omitted=list(code.omitted),
            ),
            tags=tag_values,
        )
        writer = self._new_writer(run_id, {})
        parents = [code.tip] if code.tip else []
        writer.create(
            journal.create_record(run_id, run.to_plain(), parents),
            {"run": run.to_plain(), "parents": parents},
        )
        if commit:
            self._flush_writer(writer)
        return run

    def _code_version(self, run_id: str) -> CodeVersion:
        return self._code_of(self._work, run_id, _main_script())

    def _code_of(
        self, work: Store | None, run_id: str, entry_point: Path | None = None
    ) -> CodeVersion:
        """The code in ``work`` a new run records, copied into the store when it is elsewhere.

        ``entry_point`` (the running script) joins a snapshot even when Git ignores it.
        """
        if work is None or work.bare:
            return CodeVersion(None, None, False, None)
        code = work.code_version(
            snapshot_message=f"gitml: snapshot of the dirty work tree for run {run_id[:12]}",
            entry_point=entry_point,
        )
        if code.tip is not None and work.gitdir != self.store.gitdir:
            self.store.import_history(work, code.tip)
        return code

    def get_run(self, run_id: str) -> Run:
        self._flush_for_read(run_id)
        tip = self._run_tip(run_id)
        return self._read_run(RUNS + run_id, self.store.snapshot(tip))

    @property
    def index(self) -> QueryIndex:
        """The query index of this store (``.git/gitml/index.sqlite``)."""
        if self._index is None:
            from gitml.query.index import QueryIndex

            self._index = QueryIndex(self.store)
        return self._index

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
        from gitml.query.search import search_runs

        self.flush()  # what this process logged is part of the answer
        ids = None if experiment_ids is None else [self._experiment_ref(e) for e in experiment_ids]
        return search_runs(
            self.index, ids, filter_string, run_view_type, max_results, order_by, page_token
        )

    def run_counts(self) -> dict[str, dict[str, int]]:
        """Experiment id to its number of ``active`` and ``deleted`` runs."""
        from gitml.query.lookups import run_counts

        return run_counts(self.index)

    def broken_records(self) -> list[str]:
        """Why the index skipped run records that failed validation, one line each."""
        return self.index.broken()

    def _experiment_ref(self, name_or_id: str) -> str:
        """An existing experiment's id, from its id or its name (never creates one)."""
        if self.store.tip(EXPERIMENTS + name_or_id) is not None:
            return name_or_id
        found = self.get_experiment_by_name(name_or_id)
        if found is None:
            raise NotFound(f"no experiment with id or name '{name_or_id}'")
        return found.id

    def list_runs(
        self, experiment_ids: Iterable[str] | None = None, *, include_deleted: bool = False
    ) -> tuple[list[Run], list[InvalidRecord]]:
        """Every run (newest first) and, separately, every record that failed validation.

        A malformed record (say, fetched from a remote) is reported, never fatal.
        """
        self.flush()
        wanted = set(experiment_ids) if experiment_ids is not None else None
        runs: list[Run] = []
        broken: list[InvalidRecord] = []
        for ref, tip in self.store.refs(RUNS).items():
            try:
                run = self._read_run(ref, self.store.snapshot(tip))
            except InvalidRecord as exc:
                broken.append(exc)
                continue
            if wanted is not None and run.experiment_id not in wanted:
                continue
            if run.lifecycle_stage == "deleted" and not include_deleted:
                continue
            runs.append(run)
        runs.sort(key=lambda r: (r.start_time, r.id), reverse=True)
        return runs, broken

    def resolve_run_id(self, prefix: str) -> str:
        """A full run id from a unique prefix, as git resolves short hashes."""
        self.flush()  # runs this process created are committed with their first flush
        if len(prefix) == 32 and self.store.tip(RUNS + prefix) is not None:
            return prefix
        matches = [
            r[len(RUNS) :] for r in self.store.refs(RUNS) if r[len(RUNS) :].startswith(prefix)
        ]
        if not prefix or not matches:
            raise NotFound(f"no run with id '{prefix}'")
        if len(matches) > 1:
            raise InvalidInput(self._ambiguous(prefix, sorted(matches)))
        return matches[0]

    def _ambiguous(self, prefix: str, matches: list[str], shown: int = 10) -> str:
        """Which runs a prefix matches, as git lists the candidates of a short hash."""
        lines = [f"run id prefix '{prefix}' is ambiguous; {len(matches)} runs match:"]
        for run_id in matches[:shown]:
            tip = self.store.tip(RUNS + run_id)
            try:
                name = self._read_run(RUNS + run_id, self.store.snapshot(tip)).name if tip else ""
            except InvalidRecord:
                name = "(malformed record)"
            lines.append(f"  {run_id}  {name}".rstrip())
        if len(matches) > shown:
            lines.append(f"  ... and {len(matches) - shown} more")
        lines.append("Give more characters of the id.")
        return "\n".join(lines)

    def _run_tip(self, run_id: str) -> str:
        if not isinstance(run_id, str):
            raise InvalidInput(f"run id must be a string, got {run_id!r}")
        tip = self.store.tip(RUNS + run_id)
        if tip is None:
            raise NotFound(f"no run with id '{run_id}'")
        return tip

    def _read_run(self, ref: str, snap: Snapshot) -> Run:
        data = snap.read(RUN_FILE)
        if data is None:
            raise InvalidRecord(ref, RUN_FILE, "(document)", "file is missing")
        run = parse(Run, data, where=ref, path=RUN_FILE)
        if ref.startswith(RUNS) and run.id != ref[len(RUNS) :]:
            raise InvalidRecord(ref, RUN_FILE, "id", f"'{run.id}' does not match the ref name")
        return run

    # -- logging ------------------------------------------------------------

    def log_metric(
        self, run_id: str, key: str, value: float, timestamp: int | None = None, step: int = 0
    ) -> None:
        """Buffer one point (journaled before this returns); committed at the next flush."""
        point = checked_metric(key, value, step, self._now() if timestamp is None else timestamp)
        self._writer(run_id).metric(key, point[2], point[0], point[1])

    def log_param(self, run_id: str, key: str, value: Any) -> Any:
        validation.key("param", key)
        self._writer(run_id).params({key: validation.param_value(key, value)})
        return value

    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        self._writer(run_id).tags(self._tags({key: value}))

    def log_batch(
        self,
        run_id: str,
        metrics: Iterable[Metric] = (),
        params: Mapping[str, Any] | Iterable[Param] = (),
        tags: Mapping[str, Any] | Iterable[RunTag] = (),
        *,
        synchronous: bool = True,
    ) -> None:
        """Log many values at once; validated as a whole before anything is written.

        With ``synchronous`` (the default, as in MLflow) the batch is committed
        before this returns; otherwise it joins the buffer.
        """
        metric_list = list(metrics)
        param_pairs = _pairs(params, Param)
        tag_pairs = _pairs(tags, RunTag)
        validation.batch_size(len(metric_list), len(param_pairs), len(tag_pairs))
        validation.unique("param", (k for k, _ in param_pairs))
        validation.unique("tag", (k for k, _ in tag_pairs))
        checked = []
        for m in metric_list:
            if not isinstance(m, Metric):
                raise InvalidInput(f"log_batch metrics must be gitml.Metric values, got {m!r}")
            checked.append((m.key, checked_metric(m.key, m.value, m.step, m.timestamp)))
        param_values = {
            validation.key("param", k): validation.param_value(k, v) for k, v in param_pairs
        }
        tag_values = self._tags(dict(tag_pairs))
        writer = self._writer(run_id)
        if param_values:
            writer.params(param_values)
        if tag_values:
            writer.tags(tag_values)
        for key, (step, ts, value) in checked:
            writer.metric(key, value, step, ts)
        if synchronous:
            self._flush_writer(writer)

    def _tags(self, tags: Mapping[str, Any]) -> dict[str, str]:
        return {validation.key("tag", k): validation.tag_value(k, v) for k, v in tags.items()}

    def set_terminated(
        self, run_id: str, status: str = "FINISHED", end_time: int | None = None
    ) -> None:
        """End a run: buffered data, status and end time in one commit."""
        if status not in TERMINAL_STATUSES:
            raise InvalidInput(
                f"status must be one of {', '.join(TERMINAL_STATUSES)}, got {status!r}"
            )
        when = self._now() if end_time is None else validation.timestamp("end", end_time)

        def apply(run: Run, _snap: Snapshot | None) -> Files:
            run.status = status  # type: ignore[assignment]  # checked above
            run.end_time = when
            return {}

        self._edit(run_id, RunEdit(f"end run {run_id[:12]} as {status}", apply))
        with self._lock:
            writer = self._writers.pop(run_id, None)
        if writer is not None:
            writer.raise_deferred()

    def update_run(self, run_id: str, status: str | None = None, name: str | None = None) -> None:
        """Rename a run or set its status (RUNNING again when a run is resumed)."""
        if status is not None and status not in ("RUNNING", "SCHEDULED", *TERMINAL_STATUSES):
            raise InvalidInput(f"unknown run status {status!r}")
        new_name = validation.run_name(name) if name is not None else None

        def apply(run: Run, _snap: Snapshot | None) -> Files:
            if status is not None:
                run.status = status  # type: ignore[assignment]  # checked above
                if status == "RUNNING":
                    run.end_time = None
            if new_name is not None:
                run.name = new_name
            return {}

        self._edit(run_id, RunEdit(f"update run {run_id[:12]}", apply))

    def delete_tag(self, run_id: str, key: str) -> None:
        """Remove a tag from a run in one commit; as in MLflow, a missing tag is an error."""
        if key not in self.get_run(run_id).tags:
            raise NotFound(f"run {run_id} has no tag '{key}'")

        def apply(run: Run, _snap: Snapshot | None) -> Files:
            run.tags.pop(key, None)
            return {}

        self._edit(run_id, RunEdit(f"delete tag {key} of run {run_id[:12]}", apply))

    def get_child_runs(self, run_id: str, run_view_type: str = "ACTIVE_ONLY") -> list[Run]:
        """The runs started as children (nested runs) of ``run_id``, newest first."""
        from gitml.query.lookups import child_runs

        self.flush()
        return child_runs(self.index, run_id, run_view_type)

    def delete_run(self, run_id: str) -> None:
        self._set_lifecycle(run_id, "deleted")

    def restore_run(self, run_id: str) -> None:
        self._set_lifecycle(run_id, "active")

    def _set_lifecycle(self, run_id: str, stage: str) -> None:
        def apply(run: Run, _snap: Snapshot | None) -> Files:
            run.lifecycle_stage = stage  # type: ignore[assignment]  # two fixed callers
            return {}

        verb = "delete" if stage == "deleted" else "restore"
        self._edit(run_id, RunEdit(f"{verb} run {run_id[:12]}", apply))

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        """Every point of ``key``, ordered by step then timestamp."""
        self._flush_for_read(run_id)
        snap = self.store.snapshot(self._run_tip(run_id))
        points = list(metrics.history(snap, key))
        if not points and key not in self._read_run(RUNS + run_id, snap).metrics:
            raise NotFound(f"run {run_id} has no metric '{key}'")
        points.sort(key=lambda p: (p.step, p.timestamp))
        return points

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

    def _log_files(self, run_id: str, items: Sequence[tuple[str, Path | bytes]]) -> None:
        entries: list[tuple[Artifact, BlobRef | None]] = []
        for path, source in items:
            if isinstance(source, bytes):
                sha, size = hashlib.sha256(source).hexdigest(), len(source)
            else:
                sha, size = local_files.digest_file(source)
            if size > self.config.artifact_threshold:
                if isinstance(source, bytes):
                    self._external.put_bytes(source, sha)
                else:
                    self._external.put(source, sha)
                entries.append(
                    (Artifact(path=path, sha256=sha, size=size, storage="external"), None)
                )
            else:
                data = source if isinstance(source, bytes) else source.read_bytes()
                with self._lock:
                    blob = self.store.put_blob(data)
                entries.append((Artifact(path=path, sha256=sha, size=size), BlobRef(blob)))

        def apply(run: Run, snap: Snapshot | None) -> Files:
            manifest = {a.path: a for a in self._manifest(snap)}
            files: Files = {}
            for artifact, blob in entries:
                for other in manifest:
                    if other != artifact.path and (
                        other.startswith(artifact.path + "/")
                        or artifact.path.startswith(other + "/")
                    ):
                        raise InvalidInput(
                            f"artifact path '{artifact.path}' clashes with '{other}' "
                            f"of run {run.id}: one cannot be a file and a folder"
                        )
                manifest[artifact.path] = artifact
                files[f"artifacts/{artifact.path}"] = blob
            ordered = ArtifactManifest(artifacts=sorted(manifest.values(), key=lambda a: a.path))
            files[MANIFEST_FILE] = ordered.to_yaml()
            return files

        what = entries[0][0].path if len(entries) == 1 else f"{len(entries)} artifacts"
        self._edit(run_id, RunEdit(f"log {what} to run {run_id[:12]}", apply))

    def _manifest(self, snap: Snapshot | None) -> list[Artifact]:
        data = snap.read(MANIFEST_FILE) if snap is not None else None
        if data is None:
            return []
        where = snap.commit if snap is not None else ""
        return parse(ArtifactManifest, data, where=where, path=MANIFEST_FILE).artifacts

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[Artifact]:
        """Manifest entries, all of them or those at or below ``path``."""
        self._flush_for_read(run_id)
        listed = self._manifest(self.store.snapshot(self._run_tip(run_id)))
        if path is None:
            return listed
        prefix = artifact_paths.clean_path(path)
        return [a for a in listed if a.path == prefix or a.path.startswith(prefix + "/")]

    def read_artifact(self, run_id: str, path: str) -> bytes:
        """The bytes of one artifact, checked against its sha256."""
        self._flush_for_read(run_id)
        snap = self.store.snapshot(self._run_tip(run_id))
        clean = artifact_paths.clean_path(path)
        for artifact in self._manifest(snap):
            if artifact.path == clean:
                return self._artifact_bytes(run_id, snap, artifact)
        raise NotFound(f"run {run_id} has no artifact '{clean}'")

    def _artifact_bytes(self, run_id: str, snap: Snapshot, artifact: Artifact) -> bytes:
        """The bytes of ``artifact``, an entry of the manifest at ``snap`` (a commit of the
        run), from its tree or the external store; checked against its sha256."""
        what = f"run {run_id} artifact '{artifact.path}'"
        if artifact.storage == "external":
            return self._external.read(artifact.sha256, what)
        data = snap.read(f"artifacts/{artifact.path}")
        if data is None:
            raise NotFound(f"{what} is in the manifest but not in the run's tree")
        return local_files.verify(data, artifact.sha256, what)

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
                self._download(run_id, artifact, dest_root / artifact.path)
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
            self._download(run_id, artifact, artifact_paths.inside(dest_root, rel, what))
        return dest_root / (Path(base).name)

    def _download(self, run_id: str, artifact: Artifact, target: Path) -> None:
        """Write one artifact to ``target``, checked against its sha256."""
        what = f"run {run_id} artifact '{artifact.path}'"
        if artifact.storage == "external":
            self._external.copy_to(artifact.sha256, target, what)
        else:
            snap = self.store.snapshot(self._run_tip(run_id))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self._artifact_bytes(run_id, snap, artifact))

    # -- code -----------------------------------------------------------------

    def restore_code(self, run_id: str, into: str | os.PathLike[str]) -> int:
        """Write the exact code a run used (its snapshot when dirty) into ``into``."""
        run = self.get_run(run_id)
        commit = run.source.snapshot or run.source.commit
        if commit is None:
            raise NotFound(
                f"run {run_id} recorded no code commit (it was not started in a repository)"
            )
        target = Path(into)
        if target.exists() and any(target.iterdir()):
            raise InvalidInput(f"{target} is not empty; restore into a new folder")
        if not self.store.has_object(commit):
            raise NotFound(
                f"code commit {commit} of run {run_id} is missing from {self.store.root}"
            )
        return self.store.export_tree(commit, target)

    # -- buffering and commits -----------------------------------------------------

    def _writer(self, run_id: str) -> RunWriter:
        writer = self._writers.get(run_id)
        if writer is None:
            with self._lock:
                writer = self._writers.get(run_id)
                if writer is None:
                    writer = self._new_writer(run_id, self.get_run(run_id).params)
        writer.raise_deferred()
        return writer

    def _new_writer(self, run_id: str, params: dict[str, str]) -> RunWriter:
        writer = RunWriter(
            run_id,
            self.journal_dir,
            params,
            lambda batch, latest_points, segments, edit: self._commit_run(
                run_id, batch, latest_points, segments, edit
            ),
            flush_points=self.config.flush_points,
            flush_interval=self.config.flush_interval,
        )
        self._writers[run_id] = writer
        self._start_flusher()
        return writer

    def _edit(self, run_id: str, edit: RunEdit) -> None:
        writer = self._writers.get(run_id)
        if writer is not None:
            self._flush_writer(writer, edit)
        else:
            self._run_tip(run_id)
            self._commit_run(run_id, journal.Entries(), {}, [], edit)

    def _flush_writer(self, writer: RunWriter, edit: RunEdit | None = None) -> None:
        writer.raise_deferred()
        writer.flush(edit)

    def _flush_for_read(self, run_id: str) -> None:
        writer = self._writers.get(run_id)
        if writer is not None:
            self._flush_writer(writer)

    def flush(self) -> None:
        """Commit every buffered value of every run this client writes to."""
        for writer in list(self._writers.values()):
            self._flush_writer(writer)

    def _commit_run(
        self,
        run_id: str,
        batch: journal.Entries,
        latest_points: Mapping[str, Latest],
        segments: list[str],
        edit: RunEdit | None,
    ) -> None:
        """One commit with buffered values (and ``edit``), merged with the current tip."""
        rejected: list[str] = []
        ref = RUNS + run_id

        creating = batch.create
        root = tuple(creating["parents"]) if creating is not None else ()

        def build(snap: Snapshot | None) -> Change:
            if snap is not None:
                run = self._read_run(ref, snap)
            elif creating is not None:
                run = Run.model_validate(creating["run"])
            else:
                raise NotFound(f"no run with id '{run_id}'")
            rejected.clear()
            for key, value in batch.params.items():
                known = run.params.get(key)
                if known is not None and known != value:
                    rejected.append(f"param '{key}' is already '{known}' (got '{value}')")
                else:
                    run.params[key] = value
            run.tags.update(batch.tags)
            for key, (step, ts, number) in latest_points.items():
                run.metrics[key] = latest(
                    run.metrics.get(key), MetricValue(value=number, step=step, timestamp=ts)
                )
            files: Files = {}
            for key, lines in batch.metrics.items():
                files.update(metrics.append(snap, key, lines))
            if edit is not None:
                files.update(edit.apply(run, snap))
            files[RUN_FILE] = run.to_yaml()
            return Change(files, root_parents=root)

        points = sum(len(v) for v in batch.metrics.values())
        parts = []
        if creating is not None:
            parts.append(f"start run {run_id[:12]} ({creating['run']['name']})")
        if edit is not None:
            parts.append(edit.describe)
        if points:
            parts.append(f"log {points} metric points")
        if batch.params or batch.tags:
            parts.append(f"log {len(batch.params)} params, {len(batch.tags)} tags")
        subject = "; ".join(parts) or "update"
        if edit is None and creating is None:
            subject += f" to run {run_id[:12]}"
        trailers = [f"Gitml-Journal: {name}" for name in segments]
        with self._lock:
            self.store.update(ref, build, _message(subject, run_id, trailers))
        if rejected:
            raise Rejected(f"run {run_id}: a param cannot change: " + "; ".join(rejected))

    def _start_flusher(self) -> None:
        if self._flusher is None:
            self._flusher = threading.Thread(
                target=_flush_loop,
                args=(weakref.ref(self), self._closed, min(1.0, self.config.flush_interval / 2)),
                name="gitml-flush",
                daemon=True,
            )
            self._flusher.start()

    def _flush_overdue(self) -> None:
        for writer in list(self._writers.values()):
            if writer.overdue():
                try:
                    writer.flush()
                except RefBusy:
                    pass  # the values are buffered and journaled still: a later flush commits them
                except Exception as exc:  # handed to the next call on that run
                    writer.deferred = exc

    def recover(self) -> list[str]:
        """Commit journal segments left by processes that died; returns what was done.

        A segment is deleted only once a commit the run's ref reaches holds its
        values; one that cannot be committed now (a ref another writer keeps
        locked, a full disk) is kept for the next recovery. Lines that cannot
        be read are skipped and reported; the rest of the segment is recovered.
        """
        report: list[str] = []
        for orphan in journal.orphans(self.journal_dir):
            entries, skipped = orphan.read()
            for problem in skipped:
                report.append(f"{orphan.name}: {problem}")
                log.warning("journal %s: %s", orphan.path, problem)
            if not entries:  # nothing readable, or its process died as it opened it
                orphan.release()
                continue
            tip = self.store.tip(RUNS + orphan.run_id)
            if tip is None and entries.create is None:
                report.append(
                    f"{orphan.name}: run {orphan.run_id} does not exist; kept the journal"
                )
                orphan.keep()
                continue
            if tip is None or not self._segment_committed(orphan.run_id, tip, orphan.name):
                latest_points: dict[str, Latest] = {}
                for key, lines in entries.metrics.items():
                    for ln in lines:
                        step, ts, value = ln.split(b"\t")
                        point = (int(step), int(ts), float(value))
                        current = latest_points.get(key)
                        if current is None or point >= current:
                            latest_points[key] = point
                try:
                    self._commit_run(orphan.run_id, entries, latest_points, [orphan.name], None)
                except Rejected as exc:  # committed, without the values the run contradicts
                    report.append(f"{orphan.name}: {exc}")
                except (GitmlError, OSError) as exc:
                    report.append(f"{orphan.name}: not committed, kept the journal: {exc}")
                    log.warning("journal %s not committed, kept: %s", orphan.path, exc)
                    orphan.keep()
                    continue
                count = sum(len(v) for v in entries.metrics.values())
                report.append(
                    f"run {orphan.run_id}: recovered {count} metric points, "
                    f"{len(entries.params)} params, {len(entries.tags)} tags"
                )
            orphan.release()
        return report

    def _segment_committed(self, run_id: str, tip: str, segment: str) -> bool:
        """Whether a commit of the run (not of the code below it) names ``segment``."""
        run_marker = f"Gitml-Run: {run_id}"
        marker = f"Gitml-Journal: {segment}"
        return any(
            marker in c.message
            for c in self.store.history(tip, stop=lambda c: run_marker not in c.message)
        )

    def close(self) -> None:
        """Commit what is buffered and stop the background flusher."""
        try:
            self.flush()
        finally:
            self._closed.set()
            self._external.close()  # a bucket's connections; made again if used again

    def _after_fork_in_child(self) -> None:
        """A forked child starts with no buffers: what they held is the parent's to commit."""
        for writer in self._writers.values():
            writer.abandon()
        self._writers = {}
        self._lock = threading.RLock()
        self._flusher = None
        self._closed = threading.Event()


# A forked child (multiprocessing, DataLoader workers) must neither commit the
# parent's buffered values a second time nor log to a run whose first commit
# is still only in the parent's buffer, so the parent commits before forking.
_clients: weakref.WeakSet[Client] = weakref.WeakSet()


def _flush_before_fork() -> None:
    for client in list(_clients):
        client.flush()


def _reset_after_fork() -> None:
    for client in list(_clients):
        client._after_fork_in_child()


os.register_at_fork(before=_flush_before_fork, after_in_child=_reset_after_fork)


def _flush_loop(ref: weakref.ref[Client], closed: threading.Event, tick: float) -> None:
    """The background flusher; it holds the client weakly so a dropped client is freed."""
    while not closed.wait(tick):
        client = ref()
        if client is None:
            return
        client._flush_overdue()
        del client


def _close_at_exit(ref: weakref.ref[Client]) -> None:
    client = ref()
    if client is not None:
        client.close()


def _message(subject: str, run_id: str, trailers: Iterable[str] = ()) -> str:
    body = "\n".join([f"Gitml-Run: {run_id}", *trailers])
    return f"gitml: {subject}\n\n{body}"


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


def _main_script() -> Path | None:
    """The script this process runs (``python train.py``, ``python -m pkg.train``), if any."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return Path(path) if isinstance(path, str) and path else None


_USER: str | None = None


def _user() -> str:
    global _USER
    if _USER is None:
        try:
            _USER = getpass.getuser()
        except (KeyError, OSError):
            _USER = "unknown"
    return _USER
