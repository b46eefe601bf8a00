"""Lineage: walks over the commit graph from a stage change to the code.

Nothing here is bookkeeping of its own: Git's history is the lineage. A stage
branch's commit declares versions; a version's registration commit on
``refs/gitml/models/<name>`` has the run's commit as its second parent; the
run's first commit has the code commit (or the snapshot of a dirty work tree,
whose parent is the code commit) as its parent; a nested run names its parent
run in ``run.yaml``. ``Lineage`` follows those edges and returns plain, stable
JSON-ready documents; ``lineage_render`` draws one as an indented tree and
writes the Markdown a pull request shows for a stage change.

Datasets: gitml has no ``log_input`` yet. A run's datasets are what it
records itself: the tag ``mlflow.datasets`` (a JSON object or list of objects
with MLflow's dataset fields ``name``, ``digest``, ``source``,
``source_type`` and an optional ``context``) and artifacts under
``datasets/`` (with their sha256 from the run's manifest).
"""

from __future__ import annotations

import datetime
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gitml.errors import InvalidInput, NotFound
from gitml.format import layout, readers
from gitml.format.layout import MANIFEST_FILE, MODELS, RUNS, declaration_path
from gitml.format.records import (
    ArtifactManifest,
    Config,
    ModelVersion,
    Run,
    StageDeclaration,
    parse,
)
from gitml.git.store import CommitInfo, Store
from gitml.registry.declarations import (
    declaration_at,
    describe_declaration,
    stage_tip,
    stage_tips,
    tracked_stages,
)
from gitml.registry.declarations import declarations as stage_declarations
from gitml.registry.stages import check_stage
from gitml.registry.versions import check_name

if TYPE_CHECKING:
    from gitml.tracking.client import Client

DATASETS_TAG = "mlflow.datasets"
DATASETS_DIR = "datasets/"
SHORT = 12  # characters of a sha or run id shown in trees and Markdown
_STAGE_URI = re.compile(r"^(?:stage:|(?:refs/heads/)?gitml/)([^/]+)(?:/([^/]+))?/?\Z")
_MAX_PARENTS = 50  # nested runs deeper than this are a loop in hand-edited records


def lineage(client: Client, target: str, config: Config | None = None) -> dict[str, Any]:
    """The lineage document of a model version, a run or a stage.

    ``target`` is ``models:/<name>/<version>`` (or ``/latest``, ``@<stage>``),
    ``runs:/<id>`` or a run id or unique prefix of one, or a stage:
    ``stage:<stage>`` (every model it declares) or ``stage:<stage>/<model>``;
    the branch names ``gitml/<stage>`` and ``gitml/<stage>/<model>`` mean the same.
    """
    from gitml.registry.versions import Registry

    text = target.strip() if isinstance(target, str) else ""
    if not text:
        raise InvalidInput("lineage needs a models:/ URI, a run id or stage:<stage>")
    walker = Lineage(client.store, config or client.config)
    if text.startswith("models:"):
        version = Registry(client).resolve(text)
        return walker.of_version(version.name, version.version)
    stage = _STAGE_URI.match(text)
    if stage is not None and not text.startswith("gitml/proposals/"):
        return walker.of_stage(stage.group(1), stage.group(2))
    if text.startswith("runs:"):
        text = text[len("runs:") :].strip("/").split("/", 1)[0]
        if not text:
            raise InvalidInput(f"run URI {target!r}: expected runs:/<run_id>")
    elif ":" in text or "/" in text:
        raise InvalidInput(
            f"{target!r}: expected models:/<name>/<version>, runs:/<run_id>, a run id, "
            "or stage:<stage>[/<model>]"
        )
    return walker.of_run(client.resolve_run_id(text))


@dataclass(frozen=True)
class _Event:
    """One commit of a stage branch that changed one model's declaration."""

    stage: str
    info: CommitInfo
    before: StageDeclaration | None
    after: StageDeclaration | None
    proposal: CommitInfo | None  # the merged proposal's tip, for a merge

    def document(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "stage": self.stage,
            "commit": self.info.sha,
            "time": iso_time(self.info.time),
            "author": self.info.author,
            "subject": _subject(self.info),
            "before": _served(self.before),
            "after": _served(self.after),
            "change": f"{describe_declaration(self.before)} -> {describe_declaration(self.after)}",
            "merge": None,
        }
        if self.proposal is not None:
            found = layout.PROPOSAL_IN_TEXT.search(self.info.message)
            out["merge"] = {
                "commit": self.proposal.sha,
                "branch": found.group(0) if found else None,
                "proposed_by": self.proposal.author,
                "proposed_at": iso_time(self.proposal.time),
            }
        return out


class Lineage:
    """Walks of one repository's commit graph; every method returns a plain document."""

    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config
        self._events: dict[str, list[_Event]] = {}

    # -- model versions -------------------------------------------------------

    def version(self, name: str, number: int) -> ModelVersion:
        """Version ``number`` of ``name`` as the model's ref records it now."""
        return readers.read_version(self.store, check_name(name), number)

    def registration(self, name: str, number: int) -> CommitInfo | None:
        """The commit that registered the version (its second parent is the run's commit)."""
        return readers.registration_commit(self.store, name, number)

    def of_version(self, name: str, number: int) -> dict[str, Any]:
        version = self.version(name, number)
        registered = self.registration(name, number)
        # The graph's edge, not the record's field: they agree unless the record was edited.
        merged = registered is not None and len(registered.parents) > 1
        run_commit = registered.parents[1] if registered and merged else version.run_commit
        stages_now = []
        for stage, tip in self._stage_tips():
            declared = declaration_at(self.store.snapshot(tip), stage, name)
            for served in declared.versions if declared else []:
                if served.version == number:
                    stages_now.append({"stage": stage, "weight": served.weight, "commit": tip})
        history = [
            event.document()
            for event in self.stage_events(name)
            if number in _numbers(event.before) or number in _numbers(event.after)
        ]
        return {
            "kind": "model_version",
            "uri": f"models:/{name}/{number}",
            "model": name,
            "version": number,
            "status": version.status,
            "digest": version.digest,
            "source": version.source,
            "model_path": version.model_path,
            "flavors": list(version.flavors),
            "description": version.description,
            "user": version.user,
            "created": iso_time(version.creation_time / 1000),
            "registration": None
            if registered is None
            else {
                "ref": MODELS + name,
                "commit": registered.sha,
                "time": iso_time(registered.time),
                "author": registered.author,
            },
            "stages": stages_now,
            "stage_history": history,
            "run": self.of_run(version.run_id, run_commit),
        }

    # -- runs -------------------------------------------------------------------

    def run_at(self, run_id: str, commit: str) -> Run:
        return readers.read_run(self.store, run_id, at=commit)

    def of_run(
        self, run_id: str, commit: str | None = None, *, _seen: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        """The run as of ``commit`` (default: its ref's tip), its code and its parent runs."""
        if commit is None:
            commit = self.store.tip(RUNS + run_id)
            if commit is None:
                raise NotFound(f"no run with id '{run_id}'")
        run = self.run_at(run_id, commit)
        first, count = self._first_commit(run_id, commit)
        parent: dict[str, Any] | None = None
        if run.parent_run_id is not None:
            if run.parent_run_id in _seen or len(_seen) >= _MAX_PARENTS:
                parent = {"kind": "run", "id": run.parent_run_id, "missing": "loop"}
            elif self.store.tip(RUNS + run.parent_run_id) is None:
                parent = {"kind": "run", "id": run.parent_run_id, "missing": "no such run"}
            else:
                parent = self.of_run(run.parent_run_id, _seen=_seen | {run_id})
        return {
            "kind": "run",
            "uri": f"runs:/{run_id}",
            "id": run_id,
            "name": run.name,
            "experiment_id": run.experiment_id,
            "status": run.status,
            "user": run.user,
            "start_time": iso_time(run.start_time / 1000),
            "end_time": None if run.end_time is None else iso_time(run.end_time / 1000),
            "commit": commit,
            "first_commit": first.sha,
            "commits": count,
            "params": dict(sorted(run.params.items())),
            "metrics": {k: _number(m.value) for k, m in sorted(run.metrics.items())},
            "datasets": self._datasets(run, commit),
            "code": self._code(run, first),
            "parent": parent,
        }

    def _first_commit(self, run_id: str, commit: str) -> tuple[CommitInfo, int]:
        """The run's first commit (whose parent is the code) and how many commits lead to
        ``commit``: every commit of a run carries its ``Gitml-Run`` trailer."""
        first: CommitInfo | None = None
        count = 0
        for info in self.store.history(
            commit, stop=lambda i: not layout.has_trailer(i.message, layout.RUN, run_id)
        ):
            first, count = info, count + 1
        if first is None:  # a hand-made commit: the graph says nothing more
            first, count = self.store.commit_info(commit), 1
        return first, count

    def _code(self, run: Run, first: CommitInfo) -> dict[str, Any] | None:
        tip = first.parents[0] if first.parents else None
        snapshot = None
        commit = tip
        if tip is not None and run.source.snapshot == tip:
            snapshot = tip
            info = self._info(tip)
            commit = info.parents[0] if info and info.parents else run.source.commit
        if commit is None and run.source.commit is not None:
            commit = run.source.commit  # recorded, though not a parent (tracked elsewhere)
        if commit is None:
            return None
        info = self._info(commit)
        return {
            "commit": commit,
            "subject": _subject(info) if info else None,
            "author": info.author if info else None,
            "time": iso_time(info.time) if info else None,
            "branch": run.source.branch,
            "dirty": run.source.dirty or snapshot is not None,
            "snapshot": snapshot,
            "present": info is not None,
        }

    def _info(self, sha: str) -> CommitInfo | None:
        if not self.store.has_object(sha):
            return None
        try:
            return self.store.commit_info(sha)
        except NotFound:
            return None

    def _datasets(self, run: Run, commit: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        raw = run.tags.get(DATASETS_TAG)
        if raw:
            try:
                value = json.loads(raw)
            except ValueError:
                value = {"name": raw}
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, dict):
                    entry: dict[str, Any] = {"from": f"tag {DATASETS_TAG}"}
                    for key in ("name", "digest", "source_type", "source", "context"):
                        if item.get(key) is not None:
                            entry[key] = str(item[key])
                    found.append(entry)
        data = self.store.snapshot(commit).read(MANIFEST_FILE)
        if data is not None:
            where = f"{RUNS}{run.id} at {commit[:SHORT]}"
            manifest = parse(ArtifactManifest, data, where=where, path=MANIFEST_FILE)
            for artifact in manifest.artifacts:
                if artifact.path.startswith(DATASETS_DIR):
                    found.append(
                        {
                            "from": "artifact",
                            "name": artifact.path[len(DATASETS_DIR) :],
                            "path": artifact.path,
                            "digest": f"sha256:{artifact.sha256}",
                            "size": artifact.size,
                        }
                    )
        return found

    # -- stages -----------------------------------------------------------------

    def _stage_tips(self) -> list[tuple[str, str]]:
        """(stage, tip) of every stage branch, in the project's stage order, then by name;
        a remote-tracking branch stands for a local one that is missing or behind it."""
        order = {s: i for i, s in enumerate(self.config.stages)}
        found = stage_tips(self.store, tracked_stages(self.store))
        tips = [(stage, tip.commit) for stage, tip in found.items() if tip.commit is not None]
        return sorted(tips, key=lambda t: (order.get(t[0], len(order)), t[0]))

    def stage_events(self, model: str) -> list[_Event]:
        """Every change of ``model``'s declaration on every stage, oldest first."""
        cached = self._events.get(model)
        if cached is not None:
            return cached
        events: list[_Event] = []
        for stage, tip in self._stage_tips():
            events.extend(self._events_on(stage, tip, model))
        events.sort(key=lambda e: e.info.time)  # stable: same second keeps stage order
        self._events[model] = events
        return events

    def _events_on(self, stage: str, tip: str, model: str) -> Iterator[_Event]:
        path = declaration_path(model)
        found = []
        for info in self.store.history(tip, stop=lambda _: False):
            after = self.store.snapshot(info.sha)
            before = self.store.snapshot(info.parents[0]) if info.parents else None
            if after.lookup(path) == (before.lookup(path) if before else None):
                continue
            proposal = self.store.commit_info(info.parents[1]) if len(info.parents) > 1 else None
            found.append(
                _Event(
                    stage,
                    info,
                    declaration_at(before, stage, model) if before else None,
                    declaration_at(after, stage, model),
                    proposal,
                )
            )
        return reversed(found)

    def of_stage(self, stage: str, model: str | None = None) -> dict[str, Any]:
        """Every model ``stage`` declares now (or only ``model``), down to their code."""
        check_stage(stage)
        read = stage_tip(self.store, stage)
        tip = read.commit
        if tip is None:
            raise NotFound(
                f"stage '{stage}' has no branch gitml/{stage} yet: nothing was ever assigned to it"
            )
        declared = stage_declarations(self.store, stage, tip)
        if model is not None:
            check_name(model)
            if model not in declared:
                raise NotFound(f"stage '{stage}' declares no version of '{model}'")
            declared = {model: declared[model]}
        models = []
        for name, declaration in sorted(declared.items()):
            changes = [e for e in self.stage_events(name) if e.stage == stage]
            models.append(
                {
                    "model": name,
                    "declared": describe_declaration(declaration),
                    "note": declaration.note,
                    "declared_in": changes[-1].document() if changes else None,
                    "served": [
                        {"weight": v.weight, "model_version": self.of_version(name, v.version)}
                        for v in declaration.versions
                    ],
                }
            )
        return {
            "kind": "stage",
            "uri": f"stage:{stage}" + (f"/{model}" if model else ""),
            "stage": stage,
            "ref": read.ref,  # a remote-tracking branch when the local one is missing or behind
            "commit": tip,
            "models": models,
        }


# -- small helpers -----------------------------------------------------------------------


def _served(declared: StageDeclaration | None) -> list[dict[str, int]] | None:
    if declared is None:
        return None
    served: list[dict[str, int]] = declared.model_dump(mode="json")["versions"]
    return served


def _numbers(declared: StageDeclaration | None) -> list[int]:
    return [v.version for v in declared.versions] if declared else []


def _subject(info: CommitInfo) -> str:
    return info.message.split("\n", 1)[0]


def iso_time(seconds: float) -> str:
    """UTC, to the second, as ISO 8601 with a Z: stable in JSON and sortable as text."""
    stamp = datetime.datetime.fromtimestamp(int(seconds), datetime.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def _number(value: float) -> float | str:
    """A metric for JSON: NaN and infinities as strings, which JSON has no literal for."""
    return value if math.isfinite(value) else str(value)
