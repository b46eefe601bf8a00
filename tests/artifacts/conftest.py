from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def bucket(provider: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket, with the provider's test credentials in the environment."""
    provider.env(monkeypatch)
    name: str = provider.new_bucket()
    return name
