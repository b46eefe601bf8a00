"""The cache of validated records: a hit skips validation, anything else validates."""

from __future__ import annotations

import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gitml.errors import InvalidRecord
from gitml.format import record_cache
from gitml.format.record_cache import ValidatedRecords


class Validator:
    """Counts validations; returns the bytes' length as the "validated form"."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, data: bytes | None) -> dict[str, int | None]:
        self.calls += 1
        return {"length": None if data is None else len(data)}


def lookup(cache: ValidatedRecords, kind: str, data: bytes | None, check: Validator) -> object:
    return cache.validated(kind, data, lambda: check(data))


def test_bytes_are_validated_once_then_read_back(tmp_path: Path) -> None:
    check = Validator()
    cache = ValidatedRecords(tmp_path / "gitml")
    assert lookup(cache, "stage", b"abc", check) == {"length": 3}
    assert lookup(cache, "stage", b"abc", check) == {"length": 3}
    assert check.calls == 1
    # Another process (a new cache object over the same file) hits too.
    cache.close()
    again = ValidatedRecords(tmp_path / "gitml")
    assert lookup(again, "stage", b"abc", check) == {"length": 3}
    assert check.calls == 1
    # Other bytes, another kind of record, or an absent record are validated afresh.
    assert lookup(again, "stage", b"abcd", check) == {"length": 4}
    assert lookup(again, "config", b"abc", check) == {"length": 3}
    assert lookup(again, "config", None, check) == {"length": None}
    assert lookup(again, "config", None, check) == {"length": None}
    assert check.calls == 4


def test_a_record_that_fails_is_never_kept(tmp_path: Path) -> None:
    cache = ValidatedRecords(tmp_path)
    calls = []

    def refuse() -> object:
        calls.append(1)
        raise InvalidRecord("refs/heads/gitml/production", "models/churn.yaml", "versions", "bad")

    for _ in range(2):
        with pytest.raises(InvalidRecord, match=r"models/churn\.yaml.*versions"):
            cache.validated("stage", b"bad", refuse)
    assert len(calls) == 2


def test_a_writer_remembers_what_it_built(tmp_path: Path) -> None:
    cache = ValidatedRecords(tmp_path)
    cache.remember("stage", b"built", {"model": "churn"})
    check = Validator()
    assert lookup(ValidatedRecords(tmp_path), "stage", b"built", check) == {"model": "churn"}
    assert check.calls == 0


def test_other_code_validates_again_and_drops_the_old_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check = Validator()
    lookup(ValidatedRecords(tmp_path), "stage", b"abc", check)
    monkeypatch.setattr(record_cache, "_fingerprint", lambda: "another gitml")
    cache = ValidatedRecords(tmp_path)
    assert lookup(cache, "stage", b"abc", check) == {"length": 3}
    assert check.calls == 2
    with sqlite3.connect(tmp_path / record_cache.FILENAME) as conn:
        keys = [row[0] for row in conn.execute("SELECT key FROM validated")]
    assert len(keys) == 1 and keys[0].startswith("another gitml\t")


def test_editing_the_record_models_changes_the_fingerprint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "records.py"
    models.write_text("x = 1\n")
    monkeypatch.setattr(record_cache, "_MODELS", models)
    before = record_cache._fingerprint()
    models.write_text("x = 22\n")
    os.utime(models, ns=(1, 1))
    assert record_cache._fingerprint() != before


def test_a_damaged_cache_is_rebuilt(tmp_path: Path) -> None:
    (tmp_path / record_cache.FILENAME).write_bytes(b"not a database" * 100)
    check = Validator()
    cache = ValidatedRecords(tmp_path)
    for _ in range(2):
        assert lookup(cache, "stage", b"abc", check) == {"length": 3}
    assert check.calls == 1


def test_without_a_usable_folder_every_read_validates(tmp_path: Path) -> None:
    folder = tmp_path / "gitml"
    folder.write_text("a file where the folder should be")
    check = Validator()
    cache = ValidatedRecords(folder)
    for _ in range(2):
        assert lookup(cache, "stage", b"abc", check) == {"length": 3}
    assert check.calls == 2
    assert folder.read_text() == "a file where the folder should be"


def test_threads_share_one_cache(tmp_path: Path) -> None:
    cache = ValidatedRecords(tmp_path)
    check = Validator()
    lookup(cache, "stage", b"abc", check)
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(lambda _: lookup(cache, "stage", b"abc", check), range(20)))
        list(pool.map(lambda n: cache.remember("stage", b"%d" % n, {"n": n}), range(20)))
    assert found == [{"length": 3}] * 20 and check.calls == 1
    assert lookup(cache, "stage", b"7", check) == {"n": 7}
