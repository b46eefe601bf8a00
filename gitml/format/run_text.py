"""A run record read straight from the text gitml writes for it.

A first pull checks every run record it brings, and for 10,000 runs that
check was most of the pull's own time: reading the YAML, validating the
``Run`` model and writing it back as data to compare, 59 us a run. Run
records are the one kind that comes by the thousand, and their text always
has one layout: ``Run``'s fields in order, then its three maps, sorted.
``canonical_run`` reads that layout with one regular expression, checks each
value as ``yamlio.dump`` writes it and as ``Run`` requires it, and gives what
``Run.to_plain()`` would: 13 us.

It answers only when it can tell. Anything else (a list of omitted files, a
key out of order, a float where an integer goes, any text it does not know)
gets None, and the caller reads the record the usual way, with the model
deciding. ``tests/format/test_run_text.py`` holds the two in agreement: on
records of every shape and on texts mutated from them, ``canonical_run``
gives what the model gives, or None.
"""

from __future__ import annotations

import operator
import re
from typing import Any

from gitml.format import yamlio
from gitml.format.records import RUN_STATUSES

# Run's fields, one a line, each value a token that ``yamlio.scalar`` reads;
# then the maps, each "{}" or its entries, two spaces in.
_LAYOUT = re.compile(
    "id: ([^\n]+)\n"
    "experiment_id: ([^\n]+)\n"
    "name: ([^\n]+)\n"
    "status: ([^\n]+)\n"
    "lifecycle_stage: ([^\n]+)\n"
    "start_time: ([^\n]+)\n"
    "end_time: ([^\n]+)\n"
    "user: ([^\n]+)\n"
    "parent_run_id: ([^\n]+)\n"
    "source:\n"
    "  commit: ([^\n]+)\n"
    "  snapshot: ([^\n]+)\n"
    "  branch: ([^\n]+)\n"
    "  dirty: ([^\n]+)\n"
    "  entry_point: ([^\n]+)\n"
    "  omitted: \\[\\]\n"
    "params:( \\{\\}\n|\n(?:  [^\n]+\n)+)"
    "tags:( \\{\\}\n|\n(?:  [^\n]+\n)+)"
    "metrics:( \\{\\}\n|\n(?:  [^\n]+\n)+)"
)
# A key as dump writes it: plain, or double-quoted (escapes and all).
_KEY = r'([A-Za-z_][A-Za-z0-9_./-]*|"(?:[^"\\\n]|\\.)*")'
_ENTRY = re.compile(f"^  {_KEY}: ([^\n]+)$", re.M)
_METRIC = re.compile(
    f"^  {_KEY}:\n    value: ([^\n]+)\n    step: ([^\n]+)\n    timestamp: ([^\n]+)$", re.M
)
# Ids and commits as the model has them (``records.RUN_ID``, ``HEX40``) and as dump
# writes them: double-quoted when a digit comes first, plain when a letter does.
_RUN_ID = re.compile('"([0-9][0-9a-f]{31})"|([a-f][0-9a-f]{31})')
_HEX40 = re.compile('"([0-9][0-9a-f]{39})"|([a-f][0-9a-f]{39})')
_EXPERIMENT_ID = re.compile("[0-9A-Za-z_-]{1,64}")
_LIFECYCLE = ("active", "deleted")
_CHECKED = operator.itemgetter("experiment_id", "name", "status", "user", "source")
_STATUSES = frozenset(RUN_STATUSES)
_NOT = yamlio.NOT_SCALAR


def canonical_run(data: bytes) -> dict[str, Any] | None:
    """``Run.to_plain()`` of the record ``data`` holds when ``data`` is exactly what
    gitml writes for a valid run; None when this cannot tell (the model decides then)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    layout = _LAYOUT.fullmatch(text)
    if layout is None:
        return None
    (
        run_id,
        experiment_id,
        name,
        status,
        stage,
        start,
        end,
        user,
        parent,
        commit,
        snapshot,
        branch,
        dirty,
        entry_point,
        params_text,
        tags_text,
        metrics_text,
    ) = layout.groups()
    fields = {
        "id": _hex(_RUN_ID, run_id),
        "experiment_id": yamlio.scalar(experiment_id),
        "name": yamlio.scalar(name),
        "status": yamlio.scalar(status),
        "lifecycle_stage": yamlio.scalar(stage),
        "start_time": _count(start),
        "end_time": None if end == "null" else _count(end),
        "user": yamlio.scalar(user),
        "parent_run_id": None if parent == "null" else _hex(_RUN_ID, parent),
        "source": {
            "commit": None if commit == "null" else _hex(_HEX40, commit),
            "snapshot": None if snapshot == "null" else _hex(_HEX40, snapshot),
            "branch": yamlio.scalar(branch),
            "dirty": yamlio.scalar(dirty),
            "entry_point": yamlio.scalar(entry_point),
            "omitted": [],
        },
        "params": _texts(params_text),
        "tags": _texts(tags_text),
        "metrics": _metrics(metrics_text),
    }
    experiment_id, name, status, user, source = _CHECKED(fields)
    ok = (
        fields["id"] is not _NOT
        and type(experiment_id) is str
        and _EXPERIMENT_ID.fullmatch(experiment_id)
        and type(name) is str
        and 1 <= len(name) <= 250
        and type(status) is str
        and status in _STATUSES
        and fields["lifecycle_stage"] in _LIFECYCLE
        and fields["start_time"] is not _NOT
        and fields["end_time"] is not _NOT
        and type(user) is str
        and fields["parent_run_id"] is not _NOT
        and source["commit"] is not _NOT
        and source["snapshot"] is not _NOT
        and type(source["branch"]) in (str, type(None))
        and type(source["dirty"]) is bool
        and type(source["entry_point"]) in (str, type(None))
        and fields["params"] is not None
        and fields["tags"] is not None
        and fields["metrics"] is not None
    )
    return fields if ok else None


def _hex(pattern: re.Pattern[str], token: str) -> Any:
    """The id or commit ``token`` writes, or ``_NOT``."""
    found = pattern.fullmatch(token)
    return _NOT if found is None else found.group(1) or found.group(2)


def _count(token: str) -> Any:
    """An ``Integer`` with ``ge=0``, as dump writes it (no sign, no leading zero), or
    ``_NOT``."""
    if token.isascii() and token.isdigit() and (token[0] != "0" or token == "0"):
        return int(token)
    return _NOT


def _float(token: str) -> Any:
    """A float as dump writes it, or ``_NOT``: most are their own ``repr``."""
    if "." in token and "e" not in token:
        try:
            value = float(token)
        except ValueError:  # .nan, -.inf: dump's own spellings
            value = None
        if value is not None and repr(value) == token:
            return value
    value = yamlio.scalar(token)
    return value if type(value) is float else _NOT


def _texts(block: str) -> dict[str, str] | None:
    """A map of strings to strings, its keys in order, as ``dump`` writes it."""
    entries = _entries(block, _ENTRY, 1)
    if entries is None:
        return None
    out: dict[str, str] = {}
    last = None
    for key_token, value_token in entries:
        key, value = yamlio.scalar(key_token), yamlio.scalar(value_token)
        if type(key) is not str or type(value) is not str or (last is not None and key <= last):
            return None
        out[key] = value
        last = key
    return out


def _metrics(block: str) -> dict[str, dict[str, Any]] | None:
    """The metrics' map, its keys in order, each a float value, a step and a timestamp."""
    entries = _entries(block, _METRIC, 4)
    if entries is None:
        return None
    out: dict[str, dict[str, Any]] = {}
    last = None
    for key_token, value_token, step_token, time_token in entries:
        key = yamlio.scalar(key_token)
        value, step, timestamp = _float(value_token), _count(step_token), _count(time_token)
        if (
            type(key) is not str
            or (last is not None and key <= last)
            or _NOT in (value, step, timestamp)
        ):
            return None
        out[key] = {"value": value, "step": step, "timestamp": timestamp}
        last = key
    return out


def _entries(block: str, entry: re.Pattern[str], lines: int) -> list[Any] | None:
    """The groups of each of a map's entries (``entry``, ``lines`` lines each): [] for
    "{}", None when a line is no entry."""
    if block == " {}\n":
        return []
    entries = entry.findall(block)
    return entries if lines * len(entries) == block.count("\n") - 1 else None
