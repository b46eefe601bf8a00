"""Model URIs: local paths, runs:/, registered resolvers, and the errors for the rest."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import gitml
from gitml.models import uri


@pytest.fixture
def restore_resolvers() -> Iterator[None]:
    saved = dict(uri._resolvers)
    yield
    uri._resolvers.clear()
    uri._resolvers.update(saved)


def test_local_paths(tmp_path: Path) -> None:
    assert uri.resolve(tmp_path) == tmp_path
    assert uri.resolve(f"file://{tmp_path}") == tmp_path
    with pytest.raises(gitml.InvalidInput, match="no such directory"):
        uri.resolve(tmp_path / "missing")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("s3://bucket/model", "unknown scheme 's3:'"),
        ("gs://bucket/model", "known: file, models, runs"),
        ("models:/churn", "expected models:/<name>/<version>"),
        ("runs:/abc", "expected runs:/<run_id>/<path>"),
        ("", "empty"),
    ],
)
def test_bad_uris_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(gitml.InvalidInput, match=message):
        uri.resolve(text)


def test_a_registered_resolver_handles_its_scheme(tmp_path: Path, restore_resolvers: None) -> None:
    uri.register_resolver("hub", lambda text: tmp_path / text.split("/")[-1])
    assert uri.resolve("hub:/churn/3") == tmp_path / "3"


def test_runs_uri_of_a_missing_path(repo: Path) -> None:
    with gitml.start_run() as run:
        gitml.log_text("x", "notes.txt")
    with pytest.raises(gitml.InvalidInput, match="no artifacts at 'model'"):
        uri.resolve(f"runs:/{run.run_id}/model")
    with pytest.raises(gitml.InvalidInput, match="is a file"):
        uri.resolve(f"runs:/{run.run_id}/notes.txt")
