"""Every bucket store against a real server of its provider on 127.0.0.1.

One suite over S3 (moto), Google Cloud Storage (fake-gcs-server) and Azure
Blob Storage (Azurite): round trips in the folder store's layout, transfers
in parts, the digest checked both ways, batched ``missing``, clear errors for
a missing bucket and for bad credentials, and a Client logging to the bucket.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gitml
from gitml.artifacts import ArtifactStoreUnavailable, BucketStore, SharedStore, bucket_store
from gitml.artifacts.folder import ExternalStore
from gitml.artifacts.s3 import MIN_PART_SIZE
from testing.procs import write_config

PREFIX = "team/artifacts"
BIG = 12 * 1024 * 1024  # three parts of MIN_PART_SIZE, the last one short


def open_bucket(provider: Any, bucket: str, prefix: str = PREFIX) -> BucketStore:
    settings = provider.settings(bucket, prefix)
    store = bucket_store(
        settings["artifact_store"], settings.get("artifact_endpoint_url"), part_size=MIN_PART_SIZE
    )
    assert store is not None
    return store


@pytest.fixture
def store(provider: Any, bucket: str) -> Iterator[BucketStore]:
    opened = open_bucket(provider, bucket)
    yield opened
    opened.close()


def content(tmp_path: Path, data: bytes, name: str = "f.bin") -> tuple[Path, str]:
    path = tmp_path / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def test_put_then_copy_read_has(
    store: BucketStore, provider: Any, bucket: str, tmp_path: Path
) -> None:
    source, sha = content(tmp_path, b"weights" * 100)
    assert not store.has(sha)
    store.put(source, sha)
    assert store.has(sha)
    # The folder store's layout under the prefix: a sync moves one into the other.
    assert provider.keys(bucket) == {f"{PREFIX}/{sha[:2]}/{sha[2:]}"}
    store.copy_to(sha, tmp_path / "out" / "w.bin", "w.bin")
    assert (tmp_path / "out" / "w.bin").read_bytes() == b"weights" * 100
    assert os.listdir(tmp_path / "out") == ["w.bin"]
    assert store.read(sha, "w.bin") == b"weights" * 100
    store.put_bytes(b"weights" * 100, sha)  # already there: nothing to send
    assert len(provider.keys(bucket)) == 1
    assert store.location == provider.url(bucket, PREFIX)


def test_a_file_above_one_part_goes_in_parts_and_comes_back(
    store: BucketStore, provider: Any, bucket: str, tmp_path: Path
) -> None:
    data = os.urandom(BIG)
    source, sha = content(tmp_path, data)
    store.put(source, sha)
    assert provider.keys(bucket) == {store.key(sha)}
    store.copy_to(sha, tmp_path / "back.bin", "big")
    assert (tmp_path / "back.bin").read_bytes() == data


@pytest.mark.parametrize("size", [100, BIG], ids=["one request", "in parts"])
def test_upload_of_other_content_than_the_digest_leaves_no_object(
    store: BucketStore, provider: Any, bucket: str, tmp_path: Path, size: int
) -> None:
    source, _ = content(tmp_path, b"x" * size)
    wrong = hashlib.sha256(b"what was hashed before the file changed").hexdigest()
    with pytest.raises(gitml.Corrupt, match="did it change"):
        store.put(source, wrong)
    assert provider.keys(bucket) == set()


def test_tampered_object_is_corrupt_and_leaves_no_file(
    store: BucketStore, provider: Any, bucket: str, tmp_path: Path
) -> None:
    source, sha = content(tmp_path, b"the real model")
    store.put(source, sha)
    provider.put(bucket, store.key(sha), b"a poisoned model")
    target = tmp_path / "dl" / "model.pkl"
    with pytest.raises(gitml.Corrupt, match=rf"model\.pkl.*{sha}"):
        store.copy_to(sha, target, "model.pkl")
    assert os.listdir(tmp_path / "dl") == []  # neither the file nor a partial one
    with pytest.raises(gitml.Corrupt):
        store.read(sha, "model.pkl")


def test_missing_content_is_not_found(store: BucketStore, tmp_path: Path) -> None:
    sha = "ab" * 32
    with pytest.raises(gitml.NotFound, match=f"{sha} is missing from the artifact store"):
        store.copy_to(sha, tmp_path / "x", "x")
    assert not (tmp_path / "x").exists()
    with pytest.raises(gitml.NotFound, match="missing"):
        store.read(sha, "x")


def test_missing_answers_in_one_batch(store: BucketStore, tmp_path: Path) -> None:
    held = []
    for i in range(5):
        source, sha = content(tmp_path, f"held {i}".encode(), f"{i}.bin")
        store.put(source, sha)
        held.append(sha)
    absent = {hashlib.sha256(f"absent {i}".encode()).hexdigest() for i in range(20)}
    assert store.missing([*held, *absent, *held]) == absent
    assert store.missing(held) == set()
    assert store.missing([]) == set()


def test_objects_by_name_below_a_location_list_and_download(
    provider: Any, bucket: str, tmp_path: Path
) -> None:
    """Another tool's layout (an MLflow run's artifacts), read by name, not by digest."""
    run = "mlflow/0123/artifacts"
    held = {"model/MLmodel": b"flavors: {}", "model/deep/w.bin": b"w" * 3000, "a.txt": b"a"}
    for rel, data in held.items():
        provider.put(bucket, f"{run}/{rel}", data)
    provider.mark_folder(bucket, f"{run}/model")
    provider.put(bucket, "mlflow/0123/artifacts-other/x", b"beside, not below")
    store = open_bucket(provider, bucket, run)
    assert store.objects() == sorted((rel, len(data)) for rel, data in held.items())
    assert store.objects("model/deep") == [("model/deep/w.bin", 3000)]
    assert store.objects("nothing") == []
    store.fetch("model/deep/w.bin", tmp_path / "got" / "w.bin")
    assert (tmp_path / "got" / "w.bin").read_bytes() == b"w" * 3000
    with pytest.raises(gitml.NotFound, match=f"gone.bin: no object {run}/gone.bin in bucket"):
        store.fetch("gone.bin", tmp_path / "got" / "gone.bin")
    assert os.listdir(tmp_path / "got") == ["w.bin"]
    store.close()
    elsewhere = open_bucket(provider, "no-such-bucket-here", run)
    with pytest.raises(ArtifactStoreUnavailable, match=r"listing mlflow/.*does not exist"):
        elsewhere.objects()
    elsewhere.close()


def test_transfers_in_flight_each_keep_a_connection(
    store: BucketStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """As many pooled connections as transfers in flight: none is opened to be thrown away."""
    cache = ExternalStore(tmp_path / "cache")
    shas = []
    for i in range(64):
        data = f"small {i}".encode()
        shas.append(hashlib.sha256(data).hexdigest())
        cache.put_bytes(data, shas[-1])
    with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
        SharedStore(store, cache).upload(shas)
        fresh = ExternalStore(tmp_path / "fresh")
        assert SharedStore(store, fresh).download(dict.fromkeys(shas, "x")) == (sorted(shas), {})
    assert [r.getMessage() for r in caplog.records] == []


def test_a_bucket_that_does_not_exist_is_one_line(
    provider: Any, bucket: str, tmp_path: Path
) -> None:
    source, sha = content(tmp_path, b"anything")
    store = open_bucket(provider, "no-such-bucket-here", "x")
    with pytest.raises(ArtifactStoreUnavailable, match="bucket 'no-such-bucket-here' does not"):
        store.put(source, sha)
    store.close()


def test_wrong_credentials_name_the_store_and_what_is_missing(
    provider: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, sha = content(tmp_path, b"anything")
    expected = provider.break_credentials(monkeypatch)
    store = open_bucket(provider, bucket)
    with pytest.raises(ArtifactStoreUnavailable) as refused:
        store.put(source, sha)
    message = str(refused.value)
    assert message.startswith(f"artifact store {provider.url(bucket, PREFIX)}")
    assert expected in message
    assert "\n" not in message
    store.close()


def test_client_logs_large_artifacts_to_the_bucket(
    repo: Path, provider: Any, bucket: str, tmp_path: Path
) -> None:
    write_config(repo, artifact_threshold=64, **provider.settings(bucket, "runs"))
    data = os.urandom(6 * 1024 * 1024)
    source, sha = content(tmp_path, data, "model.pt")
    small_sha = hashlib.sha256(b"small").hexdigest()
    client = gitml.Client()
    run = client.create_run()
    client.log_artifact(run.id, source, "model")
    client.log_text(run.id, "small", "notes.txt")
    [model, notes] = client.list_artifacts(run.id)
    assert (model.path, model.sha256, model.storage) == ("model/model.pt", sha, "external")
    assert notes.storage == "git" and notes.sha256 == small_sha
    # Uploaded before the commit that names it; cached on this machine too.
    key = f"runs/{sha[:2]}/{sha[2:]}"
    assert provider.keys(bucket) == {key}
    cached = repo / ".git" / "gitml" / "artifacts" / sha[:2] / sha[2:]
    assert cached.read_bytes() == data

    # Another machine (no cache) reads it from the bucket, checked.
    cached.unlink()
    assert client.read_artifact(run.id, "model/model.pt") == data
    out = client.download_artifacts(run.id, "model", tmp_path / "dl")
    assert (out / "model.pt").read_bytes() == data

    cached.unlink()
    provider.put(bucket, key, b"tampered")
    with pytest.raises(gitml.Corrupt, match=r"model/model\.pt"):
        client.download_artifacts(run.id, "model/model.pt", tmp_path / "bad")
    assert not (tmp_path / "bad" / "model.pt").exists()
    assert not cached.exists()
    client.close()
