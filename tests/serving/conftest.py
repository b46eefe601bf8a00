"""What the reconciler's tests share: a client and stages of a copy of the adder
repository, and a bare remote it was pushed to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import gitml
from gitml.registry.stages import Stages
from gitml.registry.versions import Registry
from testing.git import init_repo
from testing.reconcile import STAGE, push


@pytest.fixture
def client(adder_repo: Path) -> Iterator[gitml.Client]:
    client = gitml.Client(identity="Ada <ada@example.com>")
    yield client
    client.close()


@pytest.fixture
def stages(client: gitml.Client) -> Stages:
    return Stages(Registry(client), client.config)


@pytest.fixture
def remote(adder_repo: Path, stages: Stages, tmp_path: Path) -> Path:
    """A bare remote, ``tmp_path/served/ml.git``, holding the work repository's records
    and a production branch that serves ``adder`` v1."""
    stages.assign("adder", 1, STAGE)
    bare = init_repo(tmp_path / "served" / "ml.git", bare=True)
    push(adder_repo, bare)
    return bare
