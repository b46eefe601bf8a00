"""The columns of a run listing (``gitml runs search --columns``) and their values.

A column is an attribute of the run (``run_id``, ``status``, ``start_time``…)
or one key of its metrics, params or tags, named as in a filter string:
``metrics.rmse``, ``params.alpha``, ``tags.team`` (MLflow's aliases such as
``metric.`` and ``attributes.`` work too, and a key with dots or commas goes in
backticks: ``metrics.`val.loss```). The same column gives a short cell for a
terminal table and an exact value for CSV.
"""

from __future__ import annotations

import datetime
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gitml.errors import InvalidInput
from gitml.format.records import Run
from gitml.query.frame import INFO_COLUMNS, artifact_uri, system_tags

# attribute -> its header in a table
_ATTRIBUTES: dict[str, str] = {
    "run_id": "RUN ID",
    "run_name": "NAME",
    "status": "STATUS",
    "experiment": "EXPERIMENT",
    "experiment_id": "EXPERIMENT ID",
    "start_time": "START",
    "end_time": "END",
    "user": "USER",
    "lifecycle_stage": "STAGE",
    "artifact_uri": "ARTIFACT URI",
    "parent_run_id": "PARENT",
    "commit": "COMMIT",
    "branch": "BRANCH",
}
_ATTRIBUTE_ALIASES = {
    "id": "run_id",
    "name": "run_name",
    "user_id": "user",
    "experiment_name": "experiment",
    "start": "start_time",
    "end": "end_time",
    "stage": "lifecycle_stage",
    "parent": "parent_run_id",
    "source_commit": "commit",
    "source_branch": "branch",
}
_PREFIXES = {
    "metric": "metrics",
    "metrics": "metrics",
    "param": "params",
    "params": "params",
    "parameter": "params",
    "parameters": "params",
    "tag": "tags",
    "tags": "tags",
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
    "run": "attribute",
}
_SHORT_IDS = ("run_id", "parent_run_id", "commit")
CELL_WIDTH = 40  # a table cell longer than this is cut, with an ellipsis


@dataclass(frozen=True)
class Column:
    """``kind`` is ``attribute``, ``metrics``, ``params`` or ``tags``."""

    kind: str
    key: str

    @property
    def name(self) -> str:
        """The column's name in CSV, as in ``gitml.search_runs(output_format="pandas")``."""
        return self.key if self.kind == "attribute" else f"{self.kind}.{self.key}"

    @property
    def title(self) -> str:
        """The column's header in a terminal table."""
        return _ATTRIBUTES[self.key] if self.kind == "attribute" else self.name

    def value(self, run: Run, experiment_names: Mapping[str, str]) -> Any:
        """The exact value: str, int (milliseconds for times), float, or None."""
        if self.kind == "metrics":
            metric = run.metrics.get(self.key)
            return None if metric is None else metric.value
        if self.kind == "params":
            return run.params.get(self.key)
        if self.kind == "tags":
            return run.tags.get(self.key, system_tags(run).get(self.key))
        return _attribute(run, self.key, experiment_names)

    def cell(self, run: Run, experiment_names: Mapping[str, str]) -> str:
        """The value as a short string for a table."""
        value = self.value(run, experiment_names)
        if value is None:
            return ""
        if self.kind == "attribute" and self.key in ("start_time", "end_time"):
            return _utc(value).strftime("%Y-%m-%d %H:%M:%S")
        if self.kind == "attribute" and self.key in _SHORT_IDS:
            return str(value)[:12]
        if isinstance(value, float):
            return f"{value:.6g}"
        text = " ".join(str(value).split())  # one line per run, whatever a tag holds
        return text if len(text) <= CELL_WIDTH else text[: CELL_WIDTH - 1] + "…"

    def csv(self, run: Run, experiment_names: Mapping[str, str]) -> str:
        """The value in full for CSV: times in ISO 8601 (UTC), floats round-tripping."""
        value = self.value(run, experiment_names)
        if value is None:
            return ""
        if self.kind == "attribute" and self.key in ("start_time", "end_time"):
            return _utc(value).isoformat(timespec="milliseconds")
        if isinstance(value, float):
            return repr(value)
        return str(value)


def parse_columns(text: str) -> list[Column]:
    """Columns from a comma-separated list such as ``run_name,params.alpha,metrics.rmse``."""
    out = []
    for item in _split(text):
        column = _column(item)
        if column not in out:
            out.append(column)
    if not out:
        raise InvalidInput(f"--columns {text!r} names no column")
    return out


def table_columns(runs: Sequence[Run], hints: Iterable[str] = (), metrics: int = 3) -> list[Column]:
    """A listing's default: id, name, status, experiment, start, and up to three metrics.

    The metrics are those named in ``hints`` (the filter and the order, so a
    search for ``metrics.rmse < 1`` shows rmse), then the ones most runs have.
    """
    chosen: list[str] = []
    for hint in hints:
        for key in metric_keys_in(hint):
            if key not in chosen:
                chosen.append(key)
    counts = Counter(key for run in runs for key in run.metrics)
    for key, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if key not in chosen:
            chosen.append(key)
    fixed = ["run_id", "run_name", "status", "experiment", "start_time"]
    return [Column("attribute", a) for a in fixed] + [
        Column("metrics", key) for key in chosen[:metrics]
    ]


def export_columns(runs: Sequence[Run]) -> list[Column]:
    """Every column, laid out as ``gitml.search_runs(output_format="pandas")``: the run's
    attributes, then each metric, param and tag key (sorted) any run has."""
    columns = [Column("attribute", name) for name in INFO_COLUMNS]
    metric_keys = sorted({k for run in runs for k in run.metrics})
    param_keys = sorted({k for run in runs for k in run.params})
    tag_keys = sorted({k for run in runs for k in (*run.tags, *system_tags(run))})
    columns += [Column("metrics", k) for k in metric_keys]
    columns += [Column("params", k) for k in param_keys]
    columns += [Column("tags", k) for k in tag_keys]
    return columns


_STRING = re.compile(r"'(?:[^'\\]|\\.)*'")
_METRIC_NAME = re.compile(r"(?<![\w.`])metrics?\.(?:`([^`]+)`|\"([^\"]+)\"|([\w./:-]+))")


def metric_keys_in(text: str) -> list[str]:
    """Metric keys a filter or order-by string names (``metrics.rmse``, ``metric.`a b```)."""
    text = _STRING.sub("''", text)  # a value such as 'metrics.x' names no metric
    return [next(g for g in m.groups() if g) for m in _METRIC_NAME.finditer(text)]


def _split(text: str) -> list[str]:
    """Split at commas outside backticks."""
    items: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in text:
        if ch == "`":
            quoted = not quoted
        if ch == "," and not quoted:
            items.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    if quoted:
        raise InvalidInput(f"--columns {text!r}: a backtick is not closed")
    items.append("".join(current).strip())
    return [item for item in items if item]


def _column(item: str) -> Column:
    if item.startswith("`") and item.endswith("`") and len(item) > 1:
        item = item[1:-1]
    prefix, dot, rest = item.partition(".")
    kind = _PREFIXES.get(prefix.lower()) if dot else None
    if kind is None:
        kind, rest = "attribute", item
    if rest.startswith("`") and rest.endswith("`") and len(rest) > 1:
        rest = rest[1:-1]
    if not rest:
        raise InvalidInput(f"column '{item}' names no key: write {prefix}.<key>")
    if kind != "attribute":
        return Column(kind, rest)
    name = _ATTRIBUTE_ALIASES.get(rest.lower(), rest.lower())
    if name not in _ATTRIBUTES:
        raise InvalidInput(
            f"unknown column '{item}': use one of {', '.join(_ATTRIBUTES)}, "
            "or metrics.<key>, params.<key>, tags.<key>"
        )
    return Column("attribute", name)


def _attribute(run: Run, name: str, experiment_names: Mapping[str, str]) -> Any:
    if name == "run_id":
        return run.id
    if name == "run_name":
        return run.name
    if name == "experiment":
        return experiment_names.get(run.experiment_id, run.experiment_id)
    if name == "user":
        return run.user
    if name == "artifact_uri":
        return artifact_uri(run)
    if name == "commit":
        return run.source.commit
    if name == "branch":
        return run.source.branch
    return getattr(run, name)


def _utc(ms: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
