"""Lineage documents drawn for people: the text tree ``gitml lineage`` prints, and the
Markdown a pull request shows for a stage change (``gitml stage describe``).

The graph walk that makes the documents is ``lineage``; this module only reads
what it returns, and the stage change's declarations and versions through it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gitml.errors import InvalidInput, NotFound
from gitml.format import layout
from gitml.format.layout import PROPOSALS
from gitml.format.layout import STAGES as BRANCHES
from gitml.format.records import Config, StageDeclaration
from gitml.git.store import CommitInfo, Store
from gitml.registry.declarations import (
    branch,
    describe_declaration,
    primary_version,
    weights_problem,
)
from gitml.registry.declarations import declarations as stage_declarations
from gitml.registry.lineage import SHORT, Lineage, iso_time
from gitml.registry.stages import check_stage

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
            found = layout.PROPOSAL_IN_TEXT.search(info.message)
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
    proposal = layout.PROPOSAL_BRANCH_NAME.match(name)
    if proposal is not None and store.tip(f"refs/heads/{name.removeprefix('refs/heads/')}"):
        return proposal.group(1), name.removeprefix("refs/heads/")
    direct = layout.STAGE_BRANCH_NAME.match(name)
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
        problem = weights_problem(after, stage, config)
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
    old = primary_version(before)
    before_numbers = [v.version for v in before.versions] if before else []
    added = [v.version for v in after.versions if v.version not in before_numbers] if after else []
    new = added[-1] if added else primary_version(after)
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


# -- small helpers -----------------------------------------------------------------------


def _change_title(
    name: str, old: dict[str, StageDeclaration], new: dict[str, StageDeclaration]
) -> str:
    return f"{name} {describe_declaration(old.get(name))} -> {describe_declaration(new.get(name))}"


def _walk(store: Store, commit: str) -> Iterator[CommitInfo]:
    return store.history(commit, stop=lambda _: False)


def _first_parents(store: Store, tip: str) -> set[str]:
    return {info.sha for info in _walk(store, tip)}


def _sha(doc: dict[str, Any]) -> str:
    return str(doc["commit"])[:SHORT]


def _digest(digest: str) -> str:
    """``sha256:`` and the first 12 hex digits, as short as a short sha."""
    kind, sep, hexdigits = digest.partition(":")
    return f"{kind}:{hexdigits[:SHORT]}" if sep else digest[:SHORT]


def _when(iso: str) -> str:
    return iso.replace("T", " ").replace("Z", " UTC")


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
