"""What ``gitml runs show`` and ``gitml runs diff`` report, as plain objects.

The CLI prints these and the server will serve them; both get the same
answer from here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from gitml.errors import NotFound
from gitml.format.records import Artifact, Experiment, Run
from gitml.git.store import FileChange

if TYPE_CHECKING:
    from gitml.tracking.client import Client


@dataclass(frozen=True)
class RunSummary:
    """Enough to name a run in a listing: id, name, status, lifecycle stage."""

    id: str
    name: str
    status: str
    lifecycle_stage: str

    @classmethod
    def of(cls, run: Run) -> RunSummary:
        return cls(run.id, run.name, run.status, run.lifecycle_stage)


@dataclass(frozen=True)
class RunDetails:
    """A run with what surrounds it: experiment, artifacts, parent and children."""

    run: Run
    experiment: Experiment | None  # None when the experiment's record is missing
    artifacts: list[Artifact]
    parent: RunSummary | None  # None without a parent, or when the parent is missing
    children: list[RunSummary]

    def to_plain(self) -> dict[str, Any]:
        """The run record's fields, then ``experiment_name``, ``artifacts``, ``parent``,
        ``children``."""
        return {
            **self.run.to_plain(),
            "experiment_name": self.experiment.name if self.experiment is not None else None,
            "artifacts": [a.to_plain() for a in self.artifacts],
            "parent": asdict(self.parent) if self.parent is not None else None,
            "children": [asdict(c) for c in self.children],
        }


def run_details(client: Client, run_id: str) -> RunDetails:
    run = client.get_run(run_id)
    # Looked up, not get_experiment(): that creates a missing Default experiment,
    # and showing a run (say, one fetched without its experiment) writes nothing.
    experiment = next((e for e in client.list_experiments() if e.id == run.experiment_id), None)
    parent = None
    if run.parent_run_id is not None:
        try:
            parent = RunSummary.of(client.get_run(run.parent_run_id))
        except NotFound:
            parent = None
    children = [RunSummary.of(c) for c in client.get_child_runs(run.id, "ALL")]
    return RunDetails(run, experiment, client.list_artifacts(run.id), parent, children)


@dataclass(frozen=True)
class ValueChange:
    """One param, tag or metric of two runs: ``status`` is added, removed, changed or same.

    ``added`` means only the second run has it. ``delta`` (second minus first)
    is set for metrics both runs have.
    """

    key: str
    status: str
    a: Any
    b: Any
    delta: float | None = None


@dataclass(frozen=True)
class CodeDiff:
    """The code of two runs: their commits (snapshots when dirty) and the files between.

    ``files`` is None when no diff can be made; ``reason`` then says why.
    """

    a: str | None
    b: str | None
    files: list[FileChange] | None
    reason: str | None = None

    @property
    def added(self) -> int:
        return sum(f.added for f in self.files or ())

    @property
    def removed(self) -> int:
        return sum(f.removed for f in self.files or ())


@dataclass(frozen=True)
class RunComparison:
    a: Run
    b: Run
    params: list[ValueChange]
    metrics: list[ValueChange]
    tags: list[ValueChange]
    code: CodeDiff
    same_params: int = 0  # params both runs have with the same value

    def to_plain(self) -> dict[str, Any]:
        return {
            "a": asdict(RunSummary.of(self.a)),
            "b": asdict(RunSummary.of(self.b)),
            "params": [asdict(c) for c in self.params],
            "same_params": self.same_params,
            "metrics": [asdict(c) for c in self.metrics],
            "tags": [asdict(c) for c in self.tags],
            "code": {
                "a": self.code.a,
                "b": self.code.b,
                "files": None if self.code.files is None else [asdict(f) for f in self.code.files],
                "added": self.code.added,
                "removed": self.code.removed,
                "reason": self.code.reason,
            },
        }


def compare_runs(client: Client, run_a: str, run_b: str) -> RunComparison:
    """Params, tags, latest metrics and code of ``run_a`` against ``run_b``.

    Params and tags list only what differs; metrics list every key either
    run has, with the change from the first to the second.
    """
    a, b = client.get_run(run_a), client.get_run(run_b)
    params = _changes(a.params, b.params)
    metrics = []
    for key in sorted(set(a.metrics) | set(b.metrics)):
        ma, mb = a.metrics.get(key), b.metrics.get(key)
        va = None if ma is None else ma.value
        vb = None if mb is None else mb.value
        if va is None or vb is None:
            metrics.append(ValueChange(key, "added" if va is None else "removed", va, vb))
            continue
        same = va == vb or (math.isnan(va) and math.isnan(vb))
        metrics.append(ValueChange(key, "same" if same else "changed", va, vb, vb - va))
    return RunComparison(
        a=a,
        b=b,
        params=[c for c in params if c.status != "same"],
        metrics=metrics,
        tags=[c for c in _changes(a.tags, b.tags) if c.status != "same"],
        code=_code_diff(client, a, b),
        same_params=sum(c.status == "same" for c in params),
    )


def _changes(a: dict[str, str], b: dict[str, str]) -> list[ValueChange]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if va is None:
            status = "added"
        elif vb is None:
            status = "removed"
        else:
            status = "same" if va == vb else "changed"
        out.append(ValueChange(key, status, va, vb))
    return out


def _code_diff(client: Client, a: Run, b: Run) -> CodeDiff:
    code_a = a.source.snapshot or a.source.commit
    code_b = b.source.snapshot or b.source.commit
    for run, code in ((a, code_a), (b, code_b)):
        if code is None:
            reason = f"run {run.id} recorded no code commit (it was not started in a repository)"
            return CodeDiff(code_a, code_b, None, reason)
        if not client.store.has_object(code):
            reason = f"code commit {code} of run {run.id} is missing from {client.store.root}"
            return CodeDiff(code_a, code_b, None, reason)
    assert code_a is not None and code_b is not None
    if code_a == code_b:
        return CodeDiff(code_a, code_b, [])
    return CodeDiff(code_a, code_b, client.store.diff_stat(code_a, code_b))
