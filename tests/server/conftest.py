"""What the servers' tests share: the documented token file and a client of the adder repo."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import gitml


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    """The tracking server's documented format, as every server reads it."""
    path = tmp_path / "tokens.txt"
    path.write_text("# who may do what\nabc write\ndef read  # the dashboards\n")
    return path


@pytest.fixture
def adder(adder_repo: Path) -> Iterator[gitml.Client]:
    client = gitml.Client(identity="Ada <ada@example.com>")
    yield client
    client.close()
