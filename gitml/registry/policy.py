"""The promotion policy of ``.gitml.yaml``, evaluated for one change of a stage.

A change is what one commit (or one ``gitml stage assign``) does to a model's
declaration on a stage: ``before`` -> ``after``. The rules, per stage:

- ``ordered: true``: a version may appear on stage *i* of ``stages`` only if
  stage *i-1*'s branch has declared it at some point (the archive stage is
  outside the order); ``after: [stages]`` asks the same of named stages.
- ``metrics``: conditions in the search grammar (``metrics.accuracy >= 0.9``)
  on the source run's latest values; ``params.``, ``tags.`` and
  ``attributes.`` work too. Search's own SQL decides them, so a condition
  passes exactly when ``gitml runs search`` with it would find the run.
- ``tags``: tags the version must carry.
- ``authors``: ``fnmatch`` patterns one of which the change's author (email,
  or name) must match. Signatures are not checked: a server that needs them
  should verify them itself (``git verify-commit``) before this hook.

Only versions the change adds to the stage are checked against the version
rules, so shifting a canary's weights or removing a model needs no metrics;
``authors`` applies to every change. Problems are ``InvalidRecord`` values
naming the branch, the declaration file, the field and the rule.

Each rule is one entry of ``CHANGE_RULES`` or ``VERSION_RULES``, keyed by the
field of ``StagePolicy`` it reads; a new rule is that field (in the record and
its schema) and one function here.
"""

from __future__ import annotations

import fnmatch
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from gitml.errors import GitmlError, InvalidRecord
from gitml.format import readers
from gitml.format.layout import MODELS, RUNS, STAGES, declaration_path
from gitml.format.records import Config, ModelVersion, Run, StageDeclaration, StagePolicy
from gitml.git.store import Store
from gitml.query import grammar
from gitml.query.compile import compile_value, compile_where
from gitml.query.index import hold_run, memory_index

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

        def report(field: str, reason: str) -> None:
            problems.append(InvalidRecord(where, path, field, reason))

        for change_rule in CHANGE_RULES.values():
            change_rule(self, _Change(stage, model, rules, author, report))
        if after is None:
            return problems
        old = {v.version for v in before.versions} if before else set()
        for i, served in enumerate(after.versions):
            if served.version in old:
                continue
            field = f"versions.{i}.version"

            def problem(reason: str, field: str = field) -> None:
                report(field, reason)

            added = _Added(stage, model, served.version, rules, problem)
            for version_rule in VERSION_RULES.values():
                version_rule(self, added)
        return problems

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


# -- the rules ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Change:
    """A change of ``model``'s declaration on ``stage``; ``author`` None for a proposal."""

    stage: str
    model: str
    rules: StagePolicy
    author: str | None
    report: Callable[[str, str], None]  # (field, reason)


@dataclass(frozen=True)
class _Added:
    """A version a change adds to ``stage``; ``problem`` reports what it breaks."""

    stage: str
    model: str
    number: int
    rules: StagePolicy
    problem: Callable[[str], None]


def _authors_rule(check: PolicyCheck, change: _Change) -> None:
    allowed = change.rules.authors
    if change.author is None or not allowed or _allowed(change.author, allowed):
        return
    change.report(
        "(document)",
        f"policy stages.{change.stage}.authors: {change.author} may not change stage "
        f"'{change.stage}' (allowed: {', '.join(allowed)})",
    )


def _after_rule(check: PolicyCheck, added: _Added) -> None:
    stage, model, number = added.stage, added.model, added.number
    for earlier in check.required_stages(stage):
        if number not in check.ever_declared(earlier, model):
            rule = (
                f"stages.{stage}.after"
                if earlier in added.rules.after
                else f"ordered (stage '{earlier}' comes before '{stage}')"
            )
            added.problem(
                f"policy {rule}: version {number} of '{model}' was never declared on "
                f"stage '{earlier}'; promote it there first"
            )


def _tags_rule(check: PolicyCheck, added: _Added) -> None:
    if not added.rules.tags:
        return
    version = check.version(added.model, added.number)
    if version is None:
        return  # the missing version is a reference problem, reported elsewhere
    missing = [t for t in added.rules.tags if t not in version.tags]
    if missing:
        added.problem(
            f"policy stages.{added.stage}.tags: version {added.number} of '{added.model}' "
            f"lacks the tag(s) {', '.join(missing)}"
        )


def _metrics_rule(check: PolicyCheck, added: _Added) -> None:
    if not added.rules.metrics:
        return
    number = added.number
    version = check.version(added.model, number)
    if version is None:
        return  # the missing version is a reference problem, reported elsewhere
    run = check.run(version.run_id)
    for i, condition in enumerate(added.rules.metrics):
        rule = f"policy stages.{added.stage}.metrics.{i} '{condition}'"
        if run is None:
            added.problem(f"{rule}: the source run {version.run_id} of version {number} is missing")
            continue
        try:
            reason = check_condition(condition, run)
        except GitmlError as exc:
            first = str(exc).split("\n", 1)[0]
            added.problem(f"{rule}: not a valid condition: {first}")
            continue
        if reason is not None:
            added.problem(f"{rule}: {reason} (version {number}, run {run.id})")


# The rules of ``policy.stages.<stage>``, by the field of ``.gitml.yaml`` (and of
# ``StagePolicy``) each is read from: a rule is one field and one function here.
CHANGE_RULES: dict[str, Callable[[PolicyCheck, _Change], None]] = {"authors": _authors_rule}
"""Rules every change of a declaration meets (a proposal, without an author, skips them)."""
VERSION_RULES: dict[str, Callable[[PolicyCheck, _Added], None]] = {
    "after": _after_rule,  # and ``policy.ordered``
    "tags": _tags_rule,
    "metrics": _metrics_rule,
}
"""Rules each version a change adds meets; versions already declared are not checked again."""


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

    Decided by search's own SQL: the run is put in an in-memory database with
    the query index's tables and the condition compiled as ``search_runs``
    compiles a filter, so a promotion rule and a search with the same words
    decide alike, NaN, ``LIKE`` escapes and case folding included.
    ``InvalidInput`` (``FilterSyntaxError``) when it does not parse.
    """
    expr = grammar.parse_filter(condition)
    if expr is None:
        return None
    conn = getattr(_held, "conn", None)
    if conn is None:
        # One database per thread, kept: making one costs more than a check.
        conn = _held.conn = memory_index()
    if getattr(_held, "run", None) is not run:
        _held.run = None
        unstorable = hold_run(conn, run)
        if unstorable is not None:
            field, why = unstorable
            return f"the run cannot be searched: {field}: {why}"
        _held.run = run
    where, params = compile_where(expr)
    sql = f"SELECT 1 FROM runs r WHERE r.run_id = ? AND ({where})"
    if conn.execute(sql, [run.id, *params]).fetchone() is not None:
        return None
    return _why_not(conn, expr, run.id)


_held = threading.local()


def _why_not(conn: sqlite3.Connection, expr: grammar.Expr, run_id: str) -> str:
    """The run's values of what ``expr`` compares: the ones it lacks, else all of them."""
    idents = list(dict.fromkeys(_comparisons(expr)))
    values: list[str] = []
    params: list[object] = []
    for ident, _ in idents:
        value, value_params = compile_value(ident)
        values.append(value)
        params.extend(value_params)
    row = conn.execute(
        f"SELECT {', '.join(values)} FROM runs r WHERE r.run_id = ?", [*params, run_id]
    ).fetchone()
    pairs = list(zip(idents, row, strict=True))
    missing = [_noun(i) for (i, null_test), v in pairs if v is None and not null_test]
    if missing:
        return f"the run has no {', '.join(dict.fromkeys(missing))}"
    shown = [_shown(i, v) for (i, _), v in pairs if v is not None]
    return "false for " + ", ".join(dict.fromkeys(shown))


def _comparisons(expr: grammar.Expr) -> Iterator[tuple[grammar.Identifier, bool]]:
    """(identifier, whether it is an ``IS [NOT] NULL`` test) of every comparison, in order."""
    if isinstance(expr, grammar.Comparison):
        yield expr.ident, expr.op in grammar.NULL_OPS
        return
    for part in expr.parts:
        yield from _comparisons(part)


def _noun(ident: grammar.Identifier) -> str:
    names = {"metric": "metric", "param": "param", "tag": "tag", "dataset": "dataset"}
    return f"{names.get(ident.kind, 'attribute')} '{ident.key}'"


def _shown(ident: grammar.Identifier, value: object) -> str:
    label = f"{ident.kind}s.{ident.key}" if ident.kind != "attribute" else ident.key
    if ident.kind == "metric":
        return f"{label} = {float(str(value)):g}"
    return f"{label} = {value!r}" if isinstance(value, str) else f"{label} = {value}"
