from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="session")
def adder_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reconciler tests' repository, built once: ``adder`` v1-v3 (offsets 1, 2, 3),
    v4 (fails its example), ``other`` v1."""
    from testing.reconcile import build_repository

    path = tmp_path_factory.mktemp("template") / "work"
    return build_repository(path, tmp_path_factory.mktemp("home"))


@pytest.fixture
def adder_repo(adder_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of ``adder_template`` to change, as the current directory."""
    path = tmp_path / "work"
    shutil.copytree(adder_template, path, symlinks=True)
    monkeypatch.chdir(path)
    return path


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


# -- S3: a real S3-compatible server (moto's) for tests that ask for one --------


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1, one per test module that uses it."""
    from testing.s3 import moto_server

    with moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def s3(endpoint: str) -> Iterator[Any]:
    """A plain boto3 client, to look at and tamper with the buckets."""
    from testing.s3 import s3_client

    client = s3_client(endpoint)
    yield client
    client.close()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake, pinned credentials; nothing that points boto3 elsewhere."""
    from testing.s3 import s3_env

    s3_env(monkeypatch)


@pytest.fixture
def bucket(s3: Any) -> str:
    from testing.s3 import new_bucket

    return new_bucket(s3)


# -- every bucket provider: a real server of each on 127.0.0.1 -------------------------


@pytest.fixture(scope="module", params=["s3", "gcs", "azure"])
def provider(request: pytest.FixtureRequest) -> Iterator[Any]:
    """moto, fake-gcs-server or Azurite (a test narrows the list with ``indirect``)."""
    from testing.buckets import harness

    with harness(request.param) as opened:
        yield opened
