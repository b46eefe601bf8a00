"""Validation of record files and of the records on ``refs/gitml/*``."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from . import schemas
from .errors import InvalidRecord
from .store import Store

_REF_FILES = {
    "refs/gitml/runs/": ("run.yaml", "artifacts.yaml"),
    "refs/gitml/experiments/": ("experiment.yaml",),
}


def validate_files(paths: Iterable[Path]) -> list[InvalidRecord]:
    """Files whose name gitml knows are checked; any other file is skipped."""
    problems: list[InvalidRecord] = []
    for path in paths:
        kind = schemas.KINDS.get(path.name)
        if kind is None:
            continue
        problems.extend(schemas.check_bytes(kind, path.read_bytes(), where="", path=str(path)))
    return problems


def validate_refs(store: Store) -> list[InvalidRecord]:
    problems: list[InvalidRecord] = []
    for prefix, names in _REF_FILES.items():
        for ref, tip in sorted(store.refs(prefix).items()):
            snap = store.snapshot(tip)
            for name in names:
                data = snap.read(name)
                if data is None:
                    if name != "artifacts.yaml":
                        problems.append(InvalidRecord(ref, name, "(document)", "file is missing"))
                    continue
                problems.extend(
                    schemas.check_bytes(schemas.KINDS[name], data, where=ref, path=name)
                )
    return problems
