"""``.gitml.yaml``: optional per-project settings, validated like every record."""

from __future__ import annotations

from pathlib import Path

from .records import Config, parse

FILENAME = ".gitml.yaml"


def load(root: Path) -> Config:
    """The settings in ``root/.gitml.yaml``, or the defaults when there is none."""
    path = root / FILENAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Config()
    return parse(Config, data, where="", path=str(path))


def write(root: Path, config: Config) -> Path:
    path = root / FILENAME
    path.write_bytes(config.to_yaml())
    return path
