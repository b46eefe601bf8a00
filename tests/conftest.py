from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitml.tracking import fluent
from testing.git import IDENTITY, init_repo


@pytest.fixture(autouse=True)
def _isolated_env(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pin git's identity and config; no test reads the developer's HOME or tracking URI."""
    home = tmp_path_factory.mktemp("home")
    for key, value in IDENTITY.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.delenv("GITML_TRACKING_URI", raising=False)
    monkeypatch.delenv("GITML_EXPERIMENT_NAME", raising=False)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh work repository with one commit, as the current directory."""
    path = init_repo(tmp_path / "work")
    monkeypatch.chdir(path)
    yield path
    fluent.set_tracking_uri(None)


@pytest.fixture(autouse=True)
def _reset_fluent() -> Iterator[None]:
    yield
    while fluent.active_run() is not None:
        fluent.end_run()
    fluent.set_tracking_uri(None)
    fluent._experiment = None
    os.environ.pop("GITML_TRACKING_URI", None)
