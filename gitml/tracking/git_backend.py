"""The tracking backend over a Git repository: every change to a run is a commit.

Every run is the ref ``refs/gitml/runs/<id>``; every change to it is a commit
made through ``Store.update`` (compare-and-swap, merged against whatever
another writer committed first). Logged values go to the run's journal
(``gitml.tracking.journal``) and an in-memory buffer first
(``gitml.tracking.writer``), and become one commit per flush.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import sys
import threading
import uuid
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from gitml.artifacts import folder as local_files
from gitml.artifacts import open_store
from gitml.errors import Conflict, GitmlError, InvalidInput, InvalidRecord, NotFound, RefBusy
from gitml.format import config as config_file
from gitml.format import layout, readers
from gitml.format.layout import EXPERIMENT_FILE, EXPERIMENTS, MANIFEST_FILE, RUN_FILE, RUNS
from gitml.format.records import (
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
from gitml.tracking import journal, metrics, names
from gitml.tracking.backend import ArtifactSource, Batch, ExperimentChange, NewRun, RunQuery
from gitml.tracking.entities import Metric
from gitml.tracking.uri import resolve_store
from gitml.tracking.writer import Files, Latest, Rejected, RunEdit, RunWriter, checked_metric

if TYPE_CHECKING:
    from gitml.query.index import QueryIndex
    from gitml.query.search import RunPage

log = logging.getLogger("gitml.tracking")

DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"


class GitBackend:
    """Runs and experiments in one Git repository.

    ``code`` is where a new run's code version comes from: the repository the
    process stands in (the default), another repository, a version already
    taken, or None for none (a server's runs belong to remote clients, not to
    the code the server stands in).
    """

    remote = False

    def __init__(
        self,
        tracking_uri: str | None = None,
        *,
        clock: Clock | None = None,
        identity: str | None = None,
        code: Store | CodeVersion | Literal["work tree"] | None = "work tree",
    ) -> None:
        self.store, work = resolve_store(tracking_uri, clock=clock, identity=identity)
        settings_root = work.root if work is not None else self.store.root
        self._code = work if code == "work tree" else code
        # The running script joins the snapshot of the work tree it runs in.
        self._with_script = code == "work tree"
        self.config = config_file.load(settings_root)
        # A folder, or a bucket behind .git/gitml/artifacts (gitml.artifacts).
        self._external = open_store(self.config, settings_root, self.store.data_dir)
        self._lock = threading.RLock()
        self._writers: dict[str, RunWriter] = {}
        self._experiments: dict[str, tuple[str, Experiment]] = {}  # id -> (its commit, it)
        self._experiment_ids: dict[str, str] = {}  # name or id -> id, as resolved before
        self._index: QueryIndex | None = None
        self._flusher: threading.Thread | None = None
        self._closed = threading.Event()
        self.recovered = self.recover()
        atexit.register(_close_at_exit, weakref.ref(self))
        _backends.add(self)

    @property
    def location(self) -> str:
        return str(self.store.root)

    @property
    def journal_dir(self) -> Path:
        return self.store.data_dir / "journal"

    def now(self) -> int:
        return int(self.store.clock() * 1000)

    # -- experiments ------------------------------------------------------

    def create_experiment(self, name: str, tags: dict[str, str]) -> str:
        """A new experiment; its id is derived from the name, so two machines agree on it."""
        existing = self._experiment_named(name)
        if existing is not None:
            if existing.lifecycle_stage == "deleted":
                raise Conflict(
                    f"experiment '{name}' exists, deleted (id {existing.id}): restore it, "
                    "or give the new one another name"
                )
            raise Conflict(f"experiment '{name}' already exists")
        exp_id = self._new_experiment_id(name)
        record = Experiment(id=exp_id, name=name, creation_time=self.now(), tags=tags)

        def edit(snap: Snapshot | None) -> Change | None:
            if snap is not None:
                existing = readers.experiment_at(snap, exp_id)
                if existing.name == name:
                    return None  # another process created the same experiment first
                raise Conflict(f"experiment id {exp_id} is taken by '{existing.name}'")
            return Change({EXPERIMENT_FILE: record.to_yaml()})

        with self._lock:
            self.store.update(EXPERIMENTS + exp_id, edit, f"gitml: create experiment {name}")
        return exp_id

    def _new_experiment_id(self, name: str) -> str:
        """The first of the name's ids that no other experiment holds: the sha256 of the name,
        then of the name and a counter (an experiment renamed keeps the id of its old name)."""
        if name == DEFAULT_EXPERIMENT_NAME and self._id_free_for(DEFAULT_EXPERIMENT_ID, name):
            return DEFAULT_EXPERIMENT_ID
        number = 0
        while True:
            seed = name if number == 0 else f"{name}\n{number}"
            exp_id = hashlib.sha256(seed.encode()).hexdigest()[:16]
            if self._id_free_for(exp_id, name):
                return exp_id
            number += 1

    def _id_free_for(self, exp_id: str, name: str) -> bool:
        tip = self.store.tip(EXPERIMENTS + exp_id)
        if tip is None:
            return True
        return readers.experiment_at(self.store.snapshot(tip), exp_id).name == name

    def get_experiment(self, experiment_id: str) -> Experiment:
        tip = self.store.tip(EXPERIMENTS + experiment_id)
        if tip is None:
            if experiment_id == DEFAULT_EXPERIMENT_ID:
                self.create_experiment(DEFAULT_EXPERIMENT_NAME, {})
                return self.get_experiment(experiment_id)
            raise NotFound(f"no experiment with id '{experiment_id}'")
        # Kept by the commit it was read at: another process may rename or delete it.
        cached = self._experiments.get(experiment_id)
        if cached is None or cached[0] != tip:
            record = readers.experiment_at(self.store.snapshot(tip), experiment_id)
            cached = (tip, record)
            self._experiments[experiment_id] = cached
        return cached[1]

    def update_experiment(self, experiment_id: str, change: ExperimentChange) -> None:
        """One commit on ``experiment.yaml``: a deleted experiment takes no change but its
        lifecycle stage."""
        ref = EXPERIMENTS + experiment_id
        if change.name is not None:
            other = self._experiment_named(change.name)
            if other is not None and other.id != experiment_id:
                raise Conflict(f"experiment '{change.name}' already exists (id {other.id})")

        def edit(snap: Snapshot | None) -> Change | None:
            if snap is None:
                raise NotFound(f"no experiment with id '{experiment_id}'")
            old = readers.experiment_at(snap, experiment_id)
            stage = change.lifecycle_stage
            if stage is None and old.lifecycle_stage == "deleted":
                raise InvalidInput(
                    f"experiment '{old.name}' ({experiment_id}) is deleted: restore it "
                    "before renaming or tagging it"
                )
            for key in change.delete_tags:
                if key not in old.tags:
                    raise NotFound(f"experiment '{old.name}' ({experiment_id}) has no tag '{key}'")
            tags = {**old.tags, **change.set_tags}
            for key in change.delete_tags:
                tags.pop(key)
            new = old.model_copy(
                update={
                    "name": change.name or old.name,
                    "lifecycle_stage": stage or old.lifecycle_stage,
                    "tags": tags,
                    "last_update_time": self.now(),
                }
            )
            message = f"gitml: {_experiment_change(old, new)}"
            return Change({EXPERIMENT_FILE: new.to_yaml()}, message=message)

        with self._lock:
            self.store.update(ref, edit, f"gitml: update experiment {experiment_id}")
            self._experiment_ids.clear()  # a name may now mean another experiment, or none

    def _experiment_named(self, name: str) -> Experiment | None:
        # A malformed record has no name to trust: it matches none.
        return next((e for e in self.list_experiments(problems=[]) if e.name == name), None)

    def list_experiments(self, problems: list[InvalidRecord] | None = None) -> list[Experiment]:
        """Every experiment, by id; a malformed record raises ``InvalidRecord``, or, given
        ``problems``, is skipped and added there (a listing shows the rest)."""
        out = []
        for ref, tip in sorted(self.store.refs(EXPERIMENTS).items()):
            try:
                out.append(readers.experiment_at(self.store.snapshot(tip), ref[len(EXPERIMENTS) :]))
            except InvalidRecord as exc:
                if problems is None:
                    raise
                problems.append(exc)
        return out

    def get_or_create_experiment_id(self, name_or_id: str | None) -> str:
        """The id of an experiment named by id or name, creating it by name if needed
        (None: the configured default experiment)."""
        wanted = name_or_id or self.config.experiment
        found = self._experiment_ids.get(wanted)
        if found is not None and found != wanted and self.get_experiment(found).name != wanted:
            found = None  # renamed since (by this process or another)
        if found is None:
            if wanted == DEFAULT_EXPERIMENT_ID or self.store.tip(EXPERIMENTS + wanted):
                found = wanted
            else:
                found = self._experiment_id_named(wanted)
            self._experiment_ids[wanted] = found
        return found

    def _experiment_id_named(self, name: str) -> str:
        """The id of the experiment named ``name``, created if there is none."""
        existing = self._experiment_named(name)
        if existing is not None:
            return existing.id
        try:
            return self.create_experiment(name, {})
        except Conflict:
            # Another writer created it between the look-up and the creation.
            existing = self._experiment_named(name)
            if existing is None:
                raise
            return existing.id

    def find_experiment_id(self, name_or_id: str) -> str:
        if self.store.tip(EXPERIMENTS + name_or_id) is not None:
            return name_or_id
        found = self._experiment_named(name_or_id)
        if found is None:
            raise NotFound(f"no experiment with id or name '{name_or_id}'")
        return found.id

    # -- runs ---------------------------------------------------------------

    def create_run(self, new: NewRun) -> Run:
        """Start a run whose first commit has the code (or its dirty snapshot) as parent.

        With ``commit=False`` the new run is only journaled, and its first
        commit is made with the first flush, or by the first reader in another
        process (``_commit_journaled``).
        """
        exp_id = self.get_or_create_experiment_id(new.experiment_id)
        experiment = self.get_experiment(exp_id)
        if experiment.lifecycle_stage == "deleted":
            raise InvalidInput(
                f"experiment '{experiment.name}' ({exp_id}) is deleted: restore it before "
                "starting runs in it"
            )
        if new.parent_run_id is not None:
            self.get_run(new.parent_run_id)
        run_id = uuid.uuid4().hex
        code = self._code_version(run_id)
        run = Run(
            id=run_id,
            experiment_id=exp_id,
            name=new.name if new.name is not None else names.run_name(),
            status="RUNNING",
            start_time=self.now() if new.start_time is None else new.start_time,
            # MLflow's clients name the user in this tag, and its stores take it from there.
            user=new.tags.get("mlflow.user") or names.user(),
            parent_run_id=new.parent_run_id,
            source=Source(
                commit=code.commit,
                snapshot=code.snapshot,
                branch=code.branch,
                dirty=code.dirty,
                entry_point=new.entry_point,
                omitted=list(code.omitted),
            ),
            tags=new.tags,
        )
        writer = self._new_writer(run_id, {})
        parents = [code.tip] if code.tip else []
        writer.create(
            journal.create_record(run_id, run.to_plain(), parents),
            {"run": run.to_plain(), "parents": parents},
        )
        if new.commit:
            self._flush_writer(writer)
        return run

    def _code_version(self, run_id: str) -> CodeVersion:
        """The code a new run records, copied into the store when it is elsewhere."""
        work = self._code
        if isinstance(work, CodeVersion):
            return work
        if work is None or work.bare:
            return CodeVersion(None, None, False, None)
        code = work.code_version(
            snapshot_message=f"gitml: snapshot of the dirty work tree for run {run_id[:12]}",
            entry_point=_main_script() if self._with_script else None,
        )
        if code.tip is not None and work.gitdir != self.store.gitdir:
            self.store.import_history(work, code.tip)
        return code

    def get_run(self, run_id: str) -> Run:
        self._flush_for_read(run_id)
        tip = self.run_tip(run_id)
        return readers.run_at(self.store.snapshot(tip), run_id)

    @property
    def index(self) -> QueryIndex:
        """The query index of this store (``.git/gitml/index.sqlite``)."""
        if self._index is None:
            from gitml.query.index import QueryIndex

            self._index = QueryIndex(self.store, before_read=self._settle)
        return self._index

    def search_runs(self, query: RunQuery) -> RunPage:
        from gitml.query.search import search_runs

        wanted = query.experiment_ids
        ids = None if wanted is None else [self.find_experiment_id(e) for e in wanted]
        return search_runs(
            self.index,
            ids,
            query.filter_string,
            query.run_view_type,
            query.max_results,
            query.order_by,
            query.page_token,
        )

    def run_counts(self) -> dict[str, dict[str, int]]:
        from gitml.query.lookups import run_counts

        return run_counts(self.index)

    def broken_records(self) -> list[str]:
        return self.index.broken()

    def list_runs(
        self, experiment_ids: Sequence[str] | None, include_deleted: bool
    ) -> tuple[list[Run], list[InvalidRecord]]:
        self._settle()
        wanted = set(experiment_ids) if experiment_ids is not None else None
        runs: list[Run] = []
        broken: list[InvalidRecord] = []
        for ref, tip in self.store.refs(RUNS).items():
            try:
                run = readers.run_at(self.store.snapshot(tip), ref[len(RUNS) :])
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
        self._settle()
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
                name = readers.run_at(self.store.snapshot(tip), run_id).name if tip else ""
            except InvalidRecord:
                name = "(malformed record)"
            lines.append(f"  {run_id}  {name}".rstrip())
        if len(matches) > shown:
            lines.append(f"  ... and {len(matches) - shown} more")
        lines.append("Give more characters of the id.")
        return "\n".join(lines)

    def run_tip(self, run_id: str) -> str:
        """The commit ``refs/gitml/runs/<run_id>`` points at; ``NotFound`` for no such run."""
        if not isinstance(run_id, str):
            raise InvalidInput(f"run id must be a string, got {run_id!r}")
        tip = self.store.tip(RUNS + run_id)
        if tip is None:
            self._commit_journaled(run_id)
            tip = self.store.tip(RUNS + run_id)
        if tip is None:
            raise NotFound(f"no run with id '{run_id}'")
        return tip

    def _settle(self) -> None:
        """Commit what a reader of the refs (or of the index) should find there: what
        this backend buffered, and the runs other writers created and have not
        committed yet."""
        self.flush()
        self._commit_journaled()

    def _commit_journaled(self, run_id: str | None = None) -> None:
        """Make the first commit of each run (``run_id``: of that run only) that another
        writer created with ``commit=False`` and has not flushed yet, so that every
        reader sees a run as soon as ``create_run`` returns, as MLflow's store shows it.

        The commit holds the run as it was created and nothing the writer logged
        since: its flush commits that on top, and one that flushes first leaves
        nothing to do here. A run nobody reads before its writer flushes costs
        one commit, not two. A run that cannot be committed now (its ref busy,
        a repository this process may only read) shows from its writer's flush.
        """
        for created_id, payload in journal.journaled_creates(self.journal_dir, run_id):
            if created_id in self._writers or self.store.tip(RUNS + created_id) is not None:
                continue  # this backend's own (its flushes commit them), or committed
            run = Run.model_validate(payload["run"])
            parents = tuple(payload["parents"])

            def first(
                snap: Snapshot | None, run: Run = run, parents: tuple[str, ...] = parents
            ) -> Change | None:
                return (
                    None
                    if snap is not None
                    else Change({RUN_FILE: run.to_yaml()}, root_parents=parents)
                )

            message = layout.message(
                f"start run {created_id[:12]} ({run.name})", [(layout.RUN, created_id)]
            )
            try:
                with self._lock:
                    self.store.update(RUNS + created_id, first, message)
            except (RefBusy, OSError) as exc:
                log.info("run %s: its first commit is left to its writer: %s", created_id, exc)

    # -- logging ------------------------------------------------------------

    def log_batch(self, run_id: str, batch: Batch) -> None:
        """Journal and buffer the values (committed at the next flush, or now if synchronous).

        A batch with an id is committed at once, without this process's
        journal, the id a ``Gitml-Journal`` trailer of that commit: whoever
        sent it (a client of a server) keeps it durable until then, and finds
        the id in the run's history if it sends the batch again.
        """
        if batch.batch_id is not None:
            self._flush_for_read(run_id)
            entries = journal.Entries(params=batch.params, tags=batch.tags)
            latest_points: dict[str, Latest] = {}
            for key, point in batch.metrics:
                entries.metrics.setdefault(key, []).append(metrics.line(*point))
                _keep_latest(latest_points, key, point)
            self._commit_run(run_id, entries, latest_points, [batch.batch_id], None)
            return
        writer = self._writer(run_id)
        if batch.params:
            writer.params(batch.params)
        if batch.tags:
            writer.tags(batch.tags)
        for key, (step, ts, value) in batch.metrics:
            writer.metric(key, value, step, ts)
        if batch.synchronous:
            self._flush_writer(writer)

    def set_terminated(self, run_id: str, status: str, end_time: int) -> None:
        """End a run: buffered data, status and end time in one commit."""

        def apply(run: Run, _snap: Snapshot | None) -> Files:
            run.status = status  # type: ignore[assignment]  # the Client checked it
            run.end_time = end_time
            return {}

        self._edit(run_id, RunEdit(f"end run {run_id[:12]} as {status}", apply))
        with self._lock:
            writer = self._writers.pop(run_id, None)
        if writer is not None:
            writer.raise_deferred()

    def update_run(self, run_id: str, status: str | None, name: str | None) -> None:
        def apply(run: Run, _snap: Snapshot | None) -> Files:
            if status is not None:
                run.status = status  # type: ignore[assignment]  # the Client checked it
                if status == "RUNNING":
                    run.end_time = None
            if name is not None:
                run.name = name
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

    def get_child_runs(self, run_id: str, run_view_type: str) -> list[Run]:
        from gitml.query.lookups import child_runs

        return child_runs(self.index, run_id, run_view_type)

    def set_lifecycle(self, run_id: str, stage: str) -> None:
        def apply(run: Run, _snap: Snapshot | None) -> Files:
            run.lifecycle_stage = stage  # type: ignore[assignment]  # the Client's two values
            return {}

        verb = "delete" if stage == "deleted" else "restore"
        self._edit(run_id, RunEdit(f"{verb} run {run_id[:12]}", apply))

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        """Every point of ``key``, ordered by step then timestamp."""
        self._flush_for_read(run_id)
        snap = self.store.snapshot(self.run_tip(run_id))
        points = list(metrics.history(snap, key))
        if not points and key not in readers.run_at(snap, run_id).metrics:
            raise NotFound(f"run {run_id} has no metric '{key}'")
        points.sort(key=lambda p: (p.step, p.timestamp))
        return points

    # -- artifacts ------------------------------------------------------------

    def log_artifacts(self, run_id: str, items: Sequence[ArtifactSource]) -> None:
        """Every file in one commit; files over the threshold go to the external store."""
        self._edit(run_id, self._artifact_edit(run_id, items))

    def _artifact_edit(self, run_id: str, items: Sequence[ArtifactSource]) -> RunEdit:
        """Store ``items`` (blobs, or the external store) and the edit listing them."""
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
            manifest = {a.path: a for a in read_manifest(snap)}
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
        return RunEdit(f"log {what} to run {run_id[:12]}", apply)

    # -- records made elsewhere (an MLflow store being imported) ---------------

    def import_experiment(self, experiment: Experiment) -> bool:
        """Write an experiment recorded elsewhere with its own id and times.

        False when this repository already holds it exactly so; ``Conflict`` when
        its id names another experiment here.
        """
        ref = EXPERIMENTS + experiment.id

        def edit(snap: Snapshot | None) -> Change | None:
            if snap is not None:
                existing = readers.experiment_at(snap, experiment.id)
                if existing.name != experiment.name:
                    raise Conflict(
                        f"experiment id {experiment.id} is taken by '{existing.name}' "
                        f"(importing '{experiment.name}')"
                    )
                if existing == experiment:
                    return None
            return Change({EXPERIMENT_FILE: experiment.to_yaml()})

        before = self.store.tip(ref)
        with self._lock:
            after = self.store.update(ref, edit, f"gitml: import experiment {experiment.name}")
        return after != before

    def import_run(
        self,
        run: Run,
        history: Mapping[str, Sequence[Metric]] | None = None,
        artifacts: Sequence[ArtifactSource] = (),
    ) -> None:
        """Write a run recorded elsewhere, its id and times kept, as one commit.

        ``run`` replaces the record (a new run's first commit has the code
        commit ``run.source`` names as parent, when this repository has it),
        ``history`` is appended to the metric history and ``artifacts`` join
        the manifest, all in that commit: a reader sees the run whole or not at
        all. Nothing is journaled, as the source still holds everything.
        """
        batch = journal.Entries()
        for key, points in (history or {}).items():
            batch.metrics[key] = [
                metrics.line(*checked_metric(key, p.value, p.step, p.timestamp)) for p in points
            ]
        if self.store.tip(RUNS + run.id) is None:
            code = run.source.snapshot or run.source.commit
            parents = [code] if code is not None and self.store.has_object(code) else []
            batch.create = {"run": run.to_plain(), "parents": parents}
        added = self._artifact_edit(run.id, artifacts) if artifacts else None

        def apply(current: Run, snap: Snapshot | None) -> Files:
            files = added.apply(current, snap) if added is not None else {}
            for name in Run.model_fields:
                setattr(current, name, getattr(run, name))
            return files

        self._commit_run(run.id, batch, {}, [], RunEdit(f"import run {run.id[:12]}", apply))

    def list_artifacts(self, run_id: str, path: str | None) -> list[Artifact]:
        self._flush_for_read(run_id)
        listed = read_manifest(self.store.snapshot(self.run_tip(run_id)))
        if path is None:
            return listed
        return [a for a in listed if a.path == path or a.path.startswith(path + "/")]

    def read_artifact(self, run_id: str, path: str) -> bytes:
        self._flush_for_read(run_id)
        snap = self.store.snapshot(self.run_tip(run_id))
        for artifact in read_manifest(snap):
            if artifact.path == path:
                return self.artifact_bytes(run_id, snap, artifact)
        raise NotFound(f"run {run_id} has no artifact '{path}'")

    def artifact_bytes(self, run_id: str, snap: Snapshot, artifact: Artifact) -> bytes:
        """The bytes of ``artifact``, an entry of the manifest at ``snap`` (a commit of the
        run), from its tree or the external store; checked against its sha256."""
        what = f"run {run_id} artifact '{artifact.path}'"
        if artifact.storage == "external":
            return self._external.read(artifact.sha256, what)
        data = snap.read(f"artifacts/{artifact.path}")
        if data is None:
            raise NotFound(f"{what} is in the manifest but not in the run's tree")
        return local_files.verify(data, artifact.sha256, what)

    def download_artifact(self, run_id: str, artifact: Artifact, target: Path) -> None:
        what = f"run {run_id} artifact '{artifact.path}'"
        if artifact.storage == "external":
            self._external.copy_to(artifact.sha256, target, what)
        else:
            snap = self.store.snapshot(self.run_tip(run_id))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.artifact_bytes(run_id, snap, artifact))

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
            self.run_tip(run_id)
            self._commit_run(run_id, journal.Entries(), {}, [], edit)

    def _flush_writer(self, writer: RunWriter, edit: RunEdit | None = None) -> None:
        writer.raise_deferred()
        writer.flush(edit)

    def _flush_for_read(self, run_id: str) -> None:
        writer = self._writers.get(run_id)
        if writer is not None:
            self._flush_writer(writer)

    def flush(self) -> None:
        """Commit every buffered value of every run this backend writes to."""
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

        # Nothing but the start, which a reader in another process committed already.
        nothing_more = not (batch.params or batch.tags or batch.metrics or edit)
        started = creating is not None and nothing_more

        def build(snap: Snapshot | None) -> Change | None:
            if snap is not None and started:
                return None
            if snap is not None:
                run = readers.run_at(snap, run_id)
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
            return Change(files, root_parents=root, message=added if snap is not None else None)

        points = sum(len(v) for v in batch.metrics.values())
        parts = []
        if edit is not None:
            parts.append(edit.describe)
        if points:
            parts.append(f"log {points} metric points")
        if batch.params or batch.tags:
            parts.append(f"log {len(batch.params)} params, {len(batch.tags)} tags")
        trailers = [(layout.RUN, run_id), *((layout.JOURNAL, name) for name in segments)]
        # A run whose start another process committed (_commit_journaled): this
        # commit only adds to it, and says so.
        adding = "; ".join(parts) or "update"
        if edit is None:
            adding += f" to run {run_id[:12]}"
        added = layout.message(adding, trailers)
        if creating is not None:
            start = f"start run {run_id[:12]} ({creating['run']['name']})"
            message = layout.message("; ".join([start, *parts]), trailers)
        else:
            message = added
        with self._lock:
            self.store.update(ref, build, message)
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
                        _keep_latest(latest_points, key, (int(step), int(ts), float(value)))
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
        return any(
            layout.has_trailer(c.message, layout.JOURNAL, segment)
            for c in self.store.history(
                tip, stop=lambda c: not layout.has_trailer(c.message, layout.RUN, run_id)
            )
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


def read_manifest(snap: Snapshot | None) -> list[Artifact]:
    """The artifacts a run's commit lists (``artifacts.yaml``); none before the first."""
    data = snap.read(MANIFEST_FILE) if snap is not None else None
    if data is None:
        return []
    where = snap.commit if snap is not None else ""
    return parse(ArtifactManifest, data, where=where, path=MANIFEST_FILE).artifacts


def _keep_latest(latest_points: dict[str, Latest], key: str, point: Latest) -> None:
    current = latest_points.get(key)
    if current is None or point >= current:
        latest_points[key] = point


# A forked child (multiprocessing, DataLoader workers) must neither commit the
# parent's buffered values a second time nor log to a run whose first commit
# is still only in the parent's buffer, so the parent commits before forking.
_backends: weakref.WeakSet[GitBackend] = weakref.WeakSet()


def _flush_before_fork() -> None:
    for backend in list(_backends):
        backend.flush()


def _reset_after_fork() -> None:
    for backend in list(_backends):
        backend._after_fork_in_child()


os.register_at_fork(before=_flush_before_fork, after_in_child=_reset_after_fork)


def _flush_loop(ref: weakref.ref[GitBackend], closed: threading.Event, tick: float) -> None:
    """The background flusher; it holds the backend weakly so a dropped client is freed."""
    while not closed.wait(tick):
        backend = ref()
        if backend is None:
            return
        backend._flush_overdue()
        del backend


def _close_at_exit(ref: weakref.ref[GitBackend]) -> None:
    backend = ref()
    if backend is not None:
        backend.close()


def _experiment_change(old: Experiment, new: Experiment) -> str:
    """A commit subject saying what changed in an experiment's record."""
    if new.lifecycle_stage != old.lifecycle_stage:
        verb = "delete" if new.lifecycle_stage == "deleted" else "restore"
        return f"{verb} experiment {old.name}"
    if new.name != old.name:
        return f"rename experiment {old.name} to {new.name}"
    return f"update the tags of experiment {old.name}"


def _main_script() -> Path | None:
    """The script this process runs (``python train.py``, ``python -m pkg.train``), if any."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return Path(path) if isinstance(path, str) and path else None
