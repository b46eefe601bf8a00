from __future__ import annotations

from pathlib import Path

import pytest

from testing.git import init_repo
from testing.machines import Machine, new_machine


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return init_repo(tmp_path / "remote.git", bare=True)


@pytest.fixture
def a(tmp_path: Path, remote: Path) -> Machine:
    return new_machine(tmp_path, "A", remote, clone=False)


@pytest.fixture
def b(tmp_path: Path, remote: Path, a: Machine) -> Machine:
    return new_machine(tmp_path, "B", remote, clone=True)
