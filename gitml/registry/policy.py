"""The promotion policy of ``.gitml.yaml``, evaluated for one change of a stage.

A change is what one commit (or one ``gitml stage assign``) does to a model's
declaration on a stage: ``before`` -> ``after``. The rules, per stage:

- ``ordered: true``: a version may appear on stage *i* of ``stages`` only if
  stage *i-1*'s branch has declared it at some point (the archive stage is
  outside the order); ``after: [stages]`` asks the same of named stages.
- ``metrics``: conditions in the search grammar (``metrics.accuracy >= 0.9``)
  on the source run's latest values; ``params.``, ``tags.`` and
  ``attributes.`` work too.
- ``tags``: tags the version must carry.
- ``authors``: ``fnmatch`` patterns one of which the change's author (email,
  or name) must match. Signatures are not checked: a server that needs them
  should verify them itself (``git verify-commit``) before this hook.

Only versions the change adds to the stage are checked against the version
rules, so shifting a canary's weights or removing a model needs no metrics;
``authors`` applies to every change. Problems are ``InvalidRecord`` values
naming the branch, the declaration file, the field and the rule.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable
from typing import Any

from gitml.errors import GitmlError, InvalidRecord
from gitml.format import readers
from gitml.format.layout import MODELS, RUNS, STAGES, declaration_path
from gitml.format.records import Config, ModelVersion, Run, StageDeclaration, StagePolicy
from gitml.git.store import Store
from gitml.query import grammar

Tips = Callable[[str], str | None]
"""Ref name to commit: ``Store.tip``, or a view with a push's updates laid over it."""

_EMAIL = re.compile(r"<([^<>]*)>\s*$")


def author_parts(author: str) -> tuple[str, str]:
    """(name, email) of a ``Name <email>`` identity; email is '' when there is none."""
    match = _EMAIL.search(author)
    if match is None:
        return author.strip(), ""
    return author[: match.start()].strip(), match.group(1).strip()


class PolicyCheck:
    """The policy of one ``Config`` over one repository; caches what it reads per check.

    ``tip`` resolves refs (default ``store.tip``); the pre-receive hook passes
    a view in which the pushed refs have already moved.
    """

    def __init__(self, store: Store, config: Config, *, tip: Tips | None = None) -> None:
        self.store = store
        self.config = config
        self.tip: Tips = tip or store.tip
        self._declared: dict[tuple[str, str], set[int]] = {}
        self._versions: dict[tuple[str, int], ModelVersion | None] = {}
        self._runs: dict[str, Run | None] = {}

    def rules(self, stage: str) -> StagePolicy:
        return self.config.policy.stages.get(stage) or StagePolicy()

    def required_stages(self, stage: str) -> list[str]:
        """The stages a version must have passed through before ``stage``."""
        needed = list(self.rules(stage).after)
        ordered = [s for s in self.config.stages if s != self.config.archive_stage]
        if self.config.policy.ordered and stage in ordered:
            i = ordered.index(stage)
            if i > 0 and ordered[i - 1] not in needed:
                needed.insert(0, ordered[i - 1])
        return needed

    def change(
        self,
        stage: str,
        model: str,
        before: StageDeclaration | None,
        after: StageDeclaration | None,
        author: str | None,
        *,
        where: str | None = None,
    ) -> list[InvalidRecord]:
        """Every rule the change breaks; ``author`` None skips ``authors`` (a proposal)."""
        where = where if where is not None else STAGES + stage
        path = declaration_path(model)
        rules = self.rules(stage)
        problems: list[InvalidRecord] = []
        if author is not None and rules.authors and not _allowed(author, rules.authors):
            problems.append(
                InvalidRecord(
                    where,
                    path,
                    "(document)",
                    f"policy stages.{stage}.authors: {author} may not change stage '{stage}' "
                    f"(allowed: {', '.join(rules.authors)})",
                )
            )
        if after is None:
            return problems
        old = {v.version for v in before.versions} if before else set()
        for i, served in enumerate(after.versions):
            if served.version in old:
                continue
            field = f"versions.{i}.version"

            def problem(reason: str, field: str = field) -> None:
                problems.append(InvalidRecord(where, path, field, reason))

            self._check_version(stage, model, served.version, rules, problem)
        return problems

    def _check_version(
        self,
        stage: str,
        model: str,
        number: int,
        rules: StagePolicy,
        problem: Callable[[str], None],
    ) -> None:
        for earlier in self.required_stages(stage):
            if number not in self.ever_declared(earlier, model):
                rule = (
                    f"stages.{stage}.after"
                    if earlier in rules.after
                    else f"ordered (stage '{earlier}' comes before '{stage}')"
                )
                problem(
                    f"policy {rule}: version {number} of '{model}' was never declared on "
                    f"stage '{earlier}'; promote it there first"
                )
        if not rules.tags and not rules.metrics:
            return
        version = self.version(model, number)
        if version is None:
            return  # the missing version is a reference problem, reported elsewhere
        missing = [t for t in rules.tags if t not in version.tags]
        if missing:
            problem(
                f"policy stages.{stage}.tags: version {number} of '{model}' lacks the tag(s) "
                f"{', '.join(missing)}"
            )
        if not rules.metrics:
            return
        run = self.run(version.run_id)
        for i, condition in enumerate(rules.metrics):
            rule = f"policy stages.{stage}.metrics.{i} '{condition}'"
            if run is None:
                problem(f"{rule}: the source run {version.run_id} of version {number} is missing")
                continue
            try:
                reason = check_condition(condition, run)
            except GitmlError as exc:
                first = str(exc).split("\n", 1)[0]
                problem(f"{rule}: not a valid condition: {first}")
                continue
            if reason is not None:
                problem(f"{rule}: {reason} (version {number}, run {run.id})")

    # -- reading, cached --------------------------------------------------------

    def ever_declared(self, stage: str, model: str) -> set[int]:
        """Every version ``stage``'s branch ever declared for ``model`` (first parents)."""
        key = (stage, model)
        if key in self._declared:
            return self._declared[key]
        found: set[int] = set()
        tip = self.tip(STAGES + stage)
        seen_blobs: set[str] = set()
        path = declaration_path(model)
        if tip is not None:
            for info in self.store.history(tip, stop=lambda _: False):
                sha = self.store.snapshot(info.sha).lookup(path)
                if sha is None or sha in seen_blobs:
                    continue
                seen_blobs.add(sha)
                try:
                    declared = readers.parse_declaration(self.store.read_blob(sha), stage, model)
                except GitmlError:
                    continue  # a malformed past declaration declared nothing
                found.update(v.version for v in declared.versions)
        self._declared[key] = found
        return found

    def version(self, model: str, number: int) -> ModelVersion | None:
        key = (model, number)
        if key not in self._versions:
            self._versions[key] = read_version(self.store, self.tip, model, number)
        return self._versions[key]

    def run(self, run_id: str) -> Run | None:
        if run_id not in self._runs:
            self._runs[run_id] = read_run(self.store, self.tip, run_id)
        return self._runs[run_id]


def read_version(store: Store, tip: Tips, model: str, number: int) -> ModelVersion | None:
    """Version ``number`` of ``model`` as recorded, None when absent or malformed."""
    commit = tip(MODELS + model)
    if commit is None:
        return None
    try:
        return readers.read_version(store, model, number, at=commit)
    except GitmlError:
        return None


def read_run(store: Store, tip: Tips, run_id: str) -> Run | None:
    """The source run as recorded, None when absent or malformed."""
    commit = tip(RUNS + run_id)
    if commit is None:
        return None
    try:
        return readers.read_run(store, run_id, at=commit)
    except GitmlError:
        return None


def _allowed(author: str, patterns: list[str]) -> bool:
    name, email = author_parts(author)
    candidates = [c for c in (email, name, author.strip()) if c]
    return any(fnmatch.fnmatchcase(c, p) for p in patterns for c in candidates)


# -- conditions on one run -------------------------------------------------------------


def check_condition(condition: str, run: Run) -> str | None:
    """None when ``condition`` (the search grammar) holds for ``run``, else why not.

    ``InvalidInput`` (``FilterSyntaxError``) when it does not parse.
    """
    expr = grammar.parse_filter(condition)
    if expr is None:
        return None
    missing: list[str] = []
    seen: list[str] = []
    if _evaluate(expr, run, missing, seen):
        return None
    if missing:
        return f"the run has no {', '.join(dict.fromkeys(missing))}"
    return "false for " + ", ".join(dict.fromkeys(seen))


def _evaluate(expr: grammar.Expr, run: Run, missing: list[str], seen: list[str]) -> bool:
    if isinstance(expr, grammar.And):
        return all([_evaluate(p, run, missing, seen) for p in expr.parts])
    if isinstance(expr, grammar.Or):
        return any([_evaluate(p, run, missing, seen) for p in expr.parts])
    ident = expr.ident
    label = f"{ident.kind}s.{ident.key}" if ident.kind != "attribute" else ident.key
    value = _value(ident, run)
    if expr.op == "IS NULL":
        return value is None
    if expr.op == "IS NOT NULL":
        return value is not None
    if value is None:
        missing.append(_noun(ident))
        return False
    seen.append(f"{label} = {value!r}" if isinstance(value, str) else f"{label} = {value:g}")
    return _compare(value, expr.op, expr.value)


def _noun(ident: grammar.Identifier) -> str:
    names = {"metric": "metric", "param": "param", "tag": "tag", "dataset": "dataset"}
    return f"{names.get(ident.kind, 'attribute')} '{ident.key}'"


def _value(ident: grammar.Identifier, run: Run) -> str | float | None:
    if ident.kind == "metric":
        metric = run.metrics.get(ident.key)
        return None if metric is None else metric.value
    if ident.kind == "param":
        return run.params.get(ident.key)
    if ident.kind == "tag":
        return run.tags.get(ident.key)
    if ident.kind == "attribute":
        attributes: dict[str, Any] = {
            "run_id": run.id,
            "run_name": run.name,
            "status": run.status,
            "user_id": run.user,
            "start_time": run.start_time,
            "end_time": run.end_time,
            "artifact_uri": None,
        }
        value = attributes.get(ident.key)
        return float(value) if isinstance(value, int) else value
    return None  # datasets are not recorded in run.yaml


def _compare(value: str | float, op: str, target: Any) -> bool:
    if op in ("IN", "NOT IN"):
        return (value in target) == (op == "IN")
    if op in ("LIKE", "ILIKE"):
        flags = re.IGNORECASE if op == "ILIKE" else 0
        return re.fullmatch(_like(str(target)), str(value), flags | re.DOTALL) is not None
    if isinstance(value, float) and math.isnan(value):
        return op == "!="
    if isinstance(value, float) != isinstance(target, float):
        return False
    if op == "=":
        return bool(value == target)
    if op == "!=":
        return bool(value != target)
    if op == "<":
        return bool(value < target)
    if op == "<=":
        return bool(value <= target)
    if op == ">":
        return bool(value > target)
    return bool(value >= target)


def _like(pattern: str) -> str:
    """SQL LIKE as a regular expression: ``%`` any run, ``_`` one character."""
    return "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
