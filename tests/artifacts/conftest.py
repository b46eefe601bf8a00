from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from testing.buckets import harness


@pytest.fixture(scope="module", params=["s3", "gcs", "azure"])
def provider(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A real server of each provider on 127.0.0.1 (moto, fake-gcs-server, Azurite)."""
    with harness(request.param) as opened:
        yield opened


@pytest.fixture
def bucket(provider: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket, with the provider's test credentials in the environment."""
    provider.env(monkeypatch)
    name: str = provider.new_bucket()
    return name
