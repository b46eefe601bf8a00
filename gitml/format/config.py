"""``.gitml.yaml``: optional per-project settings, validated like every record.

The record models are imported only when needed: ``validated`` answers from
the cache of validated records without them (``gitml stage show``'s budget).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gitml.format.record_cache import ValidatedRecords
    from gitml.format.records import Config

FILENAME = ".gitml.yaml"


def load(root: Path) -> Config:
    """The settings in ``root/.gitml.yaml``, or the defaults when there is none."""
    return _parse(root / FILENAME, _read(root / FILENAME))


def validated(root: Path, cache: ValidatedRecords) -> dict[str, Any]:
    """The settings of ``load`` in their JSON form, from ``cache`` when seen before."""
    path = root / FILENAME
    data = _read(path)
    return dict(cache.validated("config", data, lambda: _parse(path, data).model_dump(mode="json")))


def write(root: Path, config: Config) -> Path:
    path = root / FILENAME
    path.write_bytes(config.to_yaml())
    return path


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _parse(path: Path, data: bytes | None) -> Config:
    from gitml.format.records import Config, parse

    return Config() if data is None else parse(Config, data, where="", path=str(path))
