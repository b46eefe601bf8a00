"""Lineage: walks over the commit graph from a stage change to the code.

Nothing here is bookkeeping of its own (DESIGN.md section 2). A stage
branch's commit declares versions; a version's registration commit on
``refs/gitml/models/<name>`` has the run's commit as its second parent; the
run's first commit has the code commit (or the snapshot of a dirty work tree,
whose parent is the code commit) as its parent; a nested run names its parent
run in ``run.yaml``. ``Lineage`` follows those edges and returns plain, stable
JSON-ready documents; ``render_tree`` draws one as an indented tree, and
``describe_stage_change`` writes the Markdown a pull request shows.

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
from gitml.format.layout import MANIFEST_FILE, MODELS, PROPOSALS, RUNS
from gitml.format.layout import STAGES as BRANCHES
from gitml.format.records import (
    ArtifactManifest,
    Config,
    ModelVersion,
    Run,
    StageDeclaration,
    parse,
)
from gitml.git.store import CommitInfo, Store
from gitml.registry.stages import (
    branch,
    check_stage,
    declaration_at,
    declaration_path,
    describe_declaration,
)
from gitml.registry.stages import declarations as stage_declarations
from gitml.registry.versions import check_name

if TYPE_CHECKING:
    from gitml.tracking.client import Client

DATASETS_TAG = "mlflow.datasets"
DATASETS_DIR = "datasets/"
SHORT = 12  # characters of a sha or run id shown in trees and Markdown
_STAGE_URI = re.compile(r"^(?:stage:|(?:refs/heads/)?gitml/)([^/]+)(?:/([^/]+))?/?\Z")
_PROPOSAL = re.compile(r"^(?:refs/heads/)?gitml/proposals/([^/]+)/(.+)\Z")
_STAGE_BRANCH = re.compile(r"^(?:refs/heads/)?gitml/([^/]+)\Z")
_PROPOSAL_IN_TEXT = re.compile(r"gitml/proposals/[A-Za-z0-9_./-]*[A-Za-z0-9_-]")
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
            found = _PROPOSAL_IN_TEXT.search(self.info.message)
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
        """(stage, tip) of every stage branch, in the project's stage order, then by name."""
        order = {s: i for i, s in enumerate(self.config.stages)}
        tips = []
        for ref, tip in self.store.refs(BRANCHES).items():
            stage = ref[len(BRANCHES) :]
            if "/" not in stage and stage != "proposals":
                tips.append((stage, tip))
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
        tip = self.store.tip(branch(stage))
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
            "ref": branch(stage),
            "commit": tip,
            "models": models,
        }


# -- the tree ----------------------------------------------------------------------


@dataclass
class _Node:
    label: str
    children: list[_Node]


def render_tree(doc: dict[str, Any]) -> str:
    """A lineage document as an indented tree with short shas (what ``gitml lineage`` prints)."""
    kind = doc.get("kind")
    node = (
        _stage_node(doc)
        if kind == "stage"
        else _version_node(doc)
        if kind == "model_version"
        else _run_node(doc, "run")
    )
    lines = [node.label]
    _draw(node.children, "", lines)
    return "\n".join(lines)


def _draw(children: list[_Node], prefix: str, lines: list[str]) -> None:
    for i, child in enumerate(children):
        last = i == len(children) - 1
        lines.append(f"{prefix}{'└── ' if last else '├── '}{child.label}")
        _draw(child.children, prefix + ("    " if last else "│   "), lines)


def _stage_node(doc: dict[str, Any]) -> _Node:
    children = []
    for entry in doc["models"]:
        label = f"{entry['model']}: {entry['declared']}"
        change = entry["declared_in"]
        if change is not None:
            label += f"  declared {_when(change['time'])} by {change['author']} in {_sha(change)}"
        kids = [_Node(f"note: {entry['note']}", [])] if entry["note"] else []
        for served in entry["served"]:
            node = _version_node(served["model_version"])
            node.label = f"{served['weight']}%  {node.label}"
            kids.append(node)
        children.append(_Node(label, kids))
    if not children:
        children.append(_Node("(declares no model)", []))
    label = f"stage {doc['stage']}  {doc['ref']} @ {doc['commit'][:SHORT]}"
    return _Node(label, children)


def _version_node(doc: dict[str, Any]) -> _Node:
    label = f"model {doc['model']} v{doc['version']}  {doc['uri']}  {doc['status']}"
    flavors = ", ".join(doc["flavors"]) or "-"
    children = [_Node(f"digest {_digest(doc['digest'])}  flavors {flavors}", [])]
    reg = doc["registration"]
    if reg is not None:
        children.append(
            _Node(f"registered {_when(reg['time'])} by {reg['author']} in {_sha(reg)}", [])
        )
    now = ", ".join(f"{s['stage']} {s['weight']}%" for s in doc["stages"])
    children.append(_Node(f"stages now: {now or 'none'}", []))
    if doc["stage_history"]:
        events = [_Node(_event_label(e), []) for e in doc["stage_history"]]
        children.append(_Node("stage history", events))
    children.append(_run_node(doc["run"], "run"))
    return _Node(label, children)


def _event_label(event: dict[str, Any]) -> str:
    text = f"{_when(event['time'])}  {event['stage']}: {event['change']}  by {event['author']}"
    merge = event["merge"]
    if merge is None:
        return f"{text}  ({_sha(event)})"
    via = f" of {merge['branch']}" if merge["branch"] else ""
    return (
        f"{text}  (merge {_sha(event)}{via}, proposed by {merge['proposed_by']} "
        f"in {merge['commit'][:SHORT]})"
    )


def _run_node(doc: dict[str, Any], what: str) -> _Node:
    if doc.get("missing"):
        return _Node(f"{what} {doc['id'][:SHORT]}  ({doc['missing']})", [])
    label = (
        f"{what} {doc['id'][:SHORT]} {doc['name']}  {doc['status']}  "
        f"(commit {doc['commit'][:SHORT]}, {doc['commits']} commit"
        f"{'' if doc['commits'] == 1 else 's'})"
    )
    children = []
    if doc["params"]:
        params = [_Node(f"{k} = {v}", []) for k, v in doc["params"].items()]
        children.append(_Node("params", params))
    if doc["metrics"]:
        metrics = [_Node(f"{k} = {_fmt(v)}", []) for k, v in doc["metrics"].items()]
        children.append(_Node("metrics", metrics))
    if doc["datasets"]:
        children.append(_Node("datasets", [_Node(_dataset_label(d), []) for d in doc["datasets"]]))
    code = doc["code"]
    if code is None:
        children.append(_Node("code: none recorded (not started in a Git work tree)", []))
    else:
        subject = f' "{code["subject"]}"' if code["subject"] is not None else " (not in this repo)"
        on = f" on {code['branch']}" if code["branch"] else ""
        kids = []
        if code["snapshot"] is not None:
            kids.append(_Node(f"dirty work tree: snapshot {code['snapshot'][:SHORT]}", []))
        elif code["dirty"]:
            kids.append(_Node("dirty work tree (no snapshot recorded)", []))
        children.append(_Node(f"code {code['commit'][:SHORT]}{subject}{on}", kids))
    if doc["parent"] is not None:
        children.append(_run_node(doc["parent"], "parent run"))
    return _Node(label, children)


def _dataset_label(entry: dict[str, Any]) -> str:
    parts = [entry.get("name") or "(unnamed)"]
    for key in ("context", "source_type", "source", "digest"):
        if entry.get(key):
            parts.append(f"{key} {_digest(entry[key]) if key == 'digest' else entry[key]}")
    return "  ".join(parts) + f"  [{entry['from']}]"


# -- stage changes as Markdown ---------------------------------------------------------


def describe_stage_change(store: Store, rev: str, config: Config) -> str:
    """A Markdown summary of the stage change ``rev`` names, for a pull request.

    ``rev`` is a commit-ish on a stage branch (``gitml/production``, a sha) or a
    proposal branch (``gitml/proposals/production/churn-v5``). The old side is the
    parent on the stage branch or, for a proposal, the stage commit it is based on.
    """
    commit = store.resolve(rev)
    stage, proposal = _stage_of(store, rev, commit)
    if stage is None:
        raise InvalidInput(
            f"'{rev}' ({commit[:SHORT]}) is not a stage change: it is on no gitml/<stage> "
            "branch and carries no Gitml-Stage trailer; give a commit of gitml/<stage> or a "
            "proposal branch gitml/proposals/<stage>/<model>-v<n>"
        )
    tip = store.tip(branch(check_stage(stage)))
    if tip is None:
        raise NotFound(f"'{rev}' is a change of stage '{stage}', which has no branch gitml/{stage}")
    chain = _first_parents(store, tip)
    info = store.commit_info(commit)
    if commit in chain:
        base = info.parents[0] if info.parents else None
        proposal = None
    else:
        base = next((c.sha for c in _walk(store, commit) if c.sha in chain), None)
        if base is None:
            raise InvalidInput(
                f"'{rev}' ({commit[:SHORT]}) is neither on branch gitml/{stage} nor based on it"
            )
        proposal = proposal or "(unnamed proposal)"
    old = stage_declarations(store, stage, base) if base else {}
    new = stage_declarations(store, stage, commit)
    changed = sorted(n for n in old.keys() | new.keys() if old.get(n) != new.get(n))
    walker = Lineage(store, config)

    out = [
        f"## gitml: {stage}: "
        + (", ".join(_change_title(n, old, new) for n in changed) or "no declaration changes")
    ]
    out.append("")
    facts = [f"**Stage** `{stage}`"]
    if proposal is not None:
        facts.append(f"**proposal** `{proposal}` at `{commit[:SHORT]}`")
        facts.append(f"**based on** `gitml/{stage}` at `{base[:SHORT] if base else '-'}`")
    else:
        facts.append(f"**commit** `{commit[:SHORT]}`")
        if len(info.parents) > 1:
            merged = store.commit_info(info.parents[1])
            found = _PROPOSAL_IN_TEXT.search(info.message)
            name = f"`{found.group(0)}` " if found else ""
            facts.append(f"**merges** {name}(`{merged.sha[:SHORT]}`, proposed by {merged.author})")
    facts.append(f"**by** {info.author} on {_when(iso_time(info.time))}")
    out.append(" · ".join(facts))
    if stage not in config.stages:
        out += [
            "",
            f"> **Warning:** `{stage}` is not one of this project's stages "
            f"({', '.join(config.stages)}).",
        ]
    if not changed:
        out += ["", "No model's declaration changes in this commit."]
    for name in changed:
        out += ["", *_describe_model(walker, stage, name, old.get(name), new.get(name), config)]
        if proposal is not None and base != tip:
            now = stage_declarations(store, stage, tip).get(name)
            if now != old.get(name):
                out += [
                    "",
                    f"> **Note:** `gitml/{stage}` has moved since this proposal was made: it now "
                    f"declares {describe_declaration(now)} for `{name}` (at `{tip[:SHORT]}`).",
                ]
    return "\n".join(out) + "\n"


def _stage_of(store: Store, rev: str, commit: str) -> tuple[str | None, str | None]:
    """(stage, proposal branch) that ``rev`` belongs to, from its name, its branch or its
    trailers (a merge's own message has none: its proposal's commit does)."""
    name = rev.strip()
    proposal = _PROPOSAL.match(name)
    if proposal is not None and store.tip(f"refs/heads/{name.removeprefix('refs/heads/')}"):
        return proposal.group(1), name.removeprefix("refs/heads/")
    direct = _STAGE_BRANCH.match(name)
    if direct is not None and direct.group(1) != "proposals":
        return direct.group(1), None
    for ref, tip in store.refs(BRANCHES).items():
        stage = ref[len(BRANCHES) :]
        if "/" not in stage and stage != "proposals" and commit in _first_parents(store, tip):
            return stage, None
    info = store.commit_info(commit)
    for candidate in (info, *(store.commit_info(p) for p in info.parents[1:2])):
        stage_name = layout.trailer(candidate.message, layout.STAGE)
        if stage_name is not None:
            for ref, tip in store.refs(PROPOSALS).items():
                if tip == commit:
                    return stage_name, ref[len("refs/heads/") :]
            return stage_name, None
    return None, None


def _describe_model(
    walker: Lineage,
    stage: str,
    name: str,
    before: StageDeclaration | None,
    after: StageDeclaration | None,
    config: Config,
) -> list[str]:
    old_number, new_number = _compared(before, after)
    old = _version_facts(walker, name, old_number)
    new = _version_facts(walker, name, new_number)
    lines = [f"### {name}: {describe_declaration(before)} -> {describe_declaration(after)}", ""]
    if after is not None and after.note:
        lines += [f"> {after.note}", ""]
    if after is not None:
        problem = _weights_problem(after, stage, config)
        if problem:
            lines += [f"> **Warning:** the new declaration's {problem}.", ""]
    lines += ["| | old | new |", "| --- | --- | --- |"]
    rows = [
        ("version", "v{version}{status}"),
        ("run", "`{run_short}` {run_name}"),
        ("run commit", "`{run_commit_short}`"),
        ("code", "{code}"),
        ("digest", "`{digest}`"),
        ("flavors", "{flavors}"),
        ("registered", "{registered}"),
    ]
    for title, pattern in rows:
        cells = [pattern.format(**f) if f else "-" for f in (old, new)]
        lines.append(f"| {title} | {cells[0]} | {cells[1]} |")
    old_run = old["run"] if old else None
    new_run = new["run"] if new else None
    lines += ["", "#### Metrics", ""]
    keys = sorted(set(old_run.metrics if old_run else {}) | set(new_run.metrics if new_run else {}))
    if keys:
        lines += [
            f"| metric | old (v{old_number or '-'}) | new (v{new_number or '-'}) | delta |",
            "| --- | ---: | ---: | ---: |",
        ]
        for key in keys:
            a = old_run.metrics[key].value if old_run and key in old_run.metrics else None
            b = new_run.metrics[key].value if new_run and key in new_run.metrics else None
            lines.append(f"| {key} | {_cell(a)} | {_cell(b)} | {_delta(a, b)} |")
    else:
        lines.append("Neither run logged metrics.")
    lines += ["", "#### Params that differ", ""]
    old_params = old_run.params if old_run else {}
    new_params = new_run.params if new_run else {}
    differ = sorted(
        k for k in old_params.keys() | new_params.keys() if old_params.get(k) != new_params.get(k)
    )
    if differ:
        lines += ["| param | old | new |", "| --- | --- | --- |"]
        for key in differ:
            lines.append(
                f"| {key} | {_md(old_params.get(key, '-'))} | {_md(new_params.get(key, '-'))} |"
            )
    else:
        lines.append("No param differs." if old_run and new_run else "Only one side has a run.")
    lines += ["", "#### Lineage", "", "```sh"]
    for facts in (old, new):
        if facts:
            lines.append(f"gitml lineage models:/{name}/{facts['version']}")
    for facts in (old, new):
        if facts:
            lines.append(f"gitml lineage runs:/{facts['run_id']}")
    lines.append(f"gitml lineage stage:{stage}/{name}")
    lines.append("```")
    return lines


def _compared(
    before: StageDeclaration | None, after: StageDeclaration | None
) -> tuple[int | None, int | None]:
    """(old, new) version numbers to compare: the old primary, and the version the change
    brings in (a canary's new version), else the new primary."""
    old = _primary(before)
    added = (
        [v.version for v in after.versions if v.version not in _numbers(before)] if after else []
    )
    new = added[-1] if added else _primary(after)
    return old, new


def _version_facts(walker: Lineage, name: str, number: int | None) -> dict[str, Any] | None:
    if number is None:
        return None
    try:
        version = walker.version(name, number)
    except NotFound:
        return None
    registered = walker.registration(name, number)
    run_commit = registered.parents[1] if registered is not None else version.run_commit
    run = walker.run_at(version.run_id, run_commit)
    first, _ = walker._first_commit(version.run_id, run_commit)
    code = walker._code(run, first)
    if code is None:
        code_text = "none recorded"
    else:
        code_text = f"`{code['commit'][:SHORT]}`"
        if code["subject"]:
            code_text += f" {_md(code['subject'])}"
        if code["snapshot"]:
            code_text += f" (dirty: snapshot `{code['snapshot'][:SHORT]}`)"
    return {
        "version": number,
        "status": "" if version.status == "READY" else f" ({version.status})",
        "run": run,
        "run_id": version.run_id,
        "run_short": version.run_id[:SHORT],
        "run_name": _md(run.name),
        "run_commit_short": run_commit[:SHORT],
        "code": code_text,
        "digest": version.digest,
        "flavors": ", ".join(version.flavors) or "-",
        "registered": "-"
        if registered is None
        else f"{_when(iso_time(registered.time))} by {_md(registered.author)}",
    }


def _weights_problem(declared: StageDeclaration, stage: str, config: Config) -> str | None:
    from gitml.registry.stages import weights_problem

    return weights_problem(declared, stage, config)


# -- small helpers -----------------------------------------------------------------------


def _change_title(
    name: str, old: dict[str, StageDeclaration], new: dict[str, StageDeclaration]
) -> str:
    return f"{name} {describe_declaration(old.get(name))} -> {describe_declaration(new.get(name))}"


def _served(declared: StageDeclaration | None) -> list[dict[str, int]] | None:
    if declared is None:
        return None
    return [{"version": v.version, "weight": v.weight} for v in declared.versions]


def _numbers(declared: StageDeclaration | None) -> list[int]:
    return [v.version for v in declared.versions] if declared else []


def _primary(declared: StageDeclaration | None) -> int | None:
    if declared is None or not declared.versions:
        return None
    return max(declared.versions, key=lambda v: (v.weight, v.version)).version


def _walk(store: Store, commit: str) -> Iterator[CommitInfo]:
    return store.history(commit, stop=lambda _: False)


def _first_parents(store: Store, tip: str) -> set[str]:
    return {info.sha for info in _walk(store, tip)}


def _subject(info: CommitInfo) -> str:
    return info.message.split("\n", 1)[0]


def _sha(doc: dict[str, Any]) -> str:
    return str(doc["commit"])[:SHORT]


def iso_time(seconds: float) -> str:
    """UTC, to the second, as ISO 8601 with a Z: stable in JSON and sortable as text."""
    stamp = datetime.datetime.fromtimestamp(int(seconds), datetime.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def _digest(digest: str) -> str:
    """``sha256:`` and the first 12 hex digits, as short as a short sha."""
    kind, sep, hexdigits = digest.partition(":")
    return f"{kind}:{hexdigits[:SHORT]}" if sep else digest[:SHORT]


def _when(iso: str) -> str:
    return iso.replace("T", " ").replace("Z", " UTC")


def _number(value: float) -> float | str:
    """A metric for JSON: NaN and infinities as strings, which JSON has no literal for."""
    return value if math.isfinite(value) else str(value)


def _fmt(value: float | str) -> str:
    return format(value, ".6g") if isinstance(value, float) else str(value)


def _cell(value: float | None) -> str:
    return "-" if value is None else _fmt(value)


def _delta(old: float | None, new: float | None) -> str:
    if old is None or new is None:
        return "-"
    if not (math.isfinite(old) and math.isfinite(new)):
        return "n/a"
    diff = new - old
    text = format(diff, "+.6g")
    if old != 0:
        text += f" ({diff / abs(old) * 100:+.2f}%)"
    return text


def _md(value: object) -> str:
    """Text safe inside a Markdown table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ")
