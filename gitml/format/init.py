"""Setting a project up: a Git repository where there is none, and ``.gitml.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gitml.errors import Conflict, NotARepository
from gitml.format import config as config_file
from gitml.format.records import Config, validate
from gitml.git.store import Store


def init_project(directory: Path, *, force: bool = False, **settings: Any) -> tuple[Path, bool]:
    """Write ``.gitml.yaml`` at the top of the repository holding ``directory``.

    Returns the file's path and whether a new repository had to be created.
    """
    directory.mkdir(parents=True, exist_ok=True)
    try:
        root = Store.discover(directory).root
        created = False
    except NotARepository:
        root = Store.init(directory).root
        created = True
    target = root / config_file.FILENAME
    if target.exists() and not force:
        raise Conflict(f"{target} exists already; pass --force to overwrite it")
    values = {k: v for k, v in settings.items() if v is not None}
    config = validate(Config, values, where="", path="gitml init options")
    return config_file.write(root, config), created
