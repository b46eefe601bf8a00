"""The S3 artifact store against a real S3-compatible server (moto's, on 127.0.0.1).

Round trips, multipart uploads, digest checks both ways, batched ``missing``,
and a Client configured with ``artifact_store: s3://…`` end to end.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gitml
from gitml.artifact_stores import (
    MIN_PART_SIZE,
    ArtifactStoreUnavailable,
    CachedStore,
    S3Store,
    open_store,
    s3_location,
)
from gitml.records import Config
from testing.procs import write_config
from testing.s3 import keys

pytestmark = pytest.mark.usefixtures("aws_env")


@pytest.fixture
def store(endpoint: str, bucket: str) -> Iterator[S3Store]:
    url = f"s3://{bucket}/team/artifacts"
    opened = S3Store(url, endpoint_url=endpoint, part_size=MIN_PART_SIZE)  # 12 MB: three parts
    yield opened
    opened.close()


def content(tmp_path: Path, data: bytes, name: str = "f.bin") -> tuple[Path, str]:
    path = tmp_path / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def test_put_then_copy_read_has(store: S3Store, s3: Any, bucket: str, tmp_path: Path) -> None:
    source, sha = content(tmp_path, b"weights" * 100)
    assert not store.has(sha)
    store.put(source, sha)
    assert store.has(sha)
    # The folder store's layout under the prefix: `aws s3 sync` moves one into the other.
    assert list(keys(s3, bucket)) == [f"team/artifacts/{sha[:2]}/{sha[2:]}"]
    store.copy_to(sha, tmp_path / "out" / "w.bin", "w.bin")
    assert (tmp_path / "out" / "w.bin").read_bytes() == b"weights" * 100
    assert os.listdir(tmp_path / "out") == ["w.bin"]
    assert store.read(sha, "w.bin") == b"weights" * 100
    store.put_bytes(b"weights" * 100, sha)  # already there: nothing to send
    assert len(keys(s3, bucket)) == 1


def test_file_larger_than_one_part_goes_up_in_parts(
    store: S3Store, s3: Any, bucket: str, tmp_path: Path
) -> None:
    data = os.urandom(12 * 1024 * 1024)  # three 5 MiB parts (the last one short)
    source, sha = content(tmp_path, data)
    store.put(source, sha)
    head = s3.head_object(Bucket=bucket, Key=store.key(sha))
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-3")  # S3's mark of a three-part upload
    store.copy_to(sha, tmp_path / "back.bin", "big")
    assert (tmp_path / "back.bin").read_bytes() == data


@pytest.mark.parametrize("size", [100, 12 * 1024 * 1024], ids=["one request", "multipart"])
def test_upload_of_other_content_than_the_digest_is_refused(
    store: S3Store, s3: Any, bucket: str, tmp_path: Path, size: int
) -> None:
    source, _ = content(tmp_path, b"x" * size)
    wrong = hashlib.sha256(b"what was hashed before the file changed").hexdigest()
    with pytest.raises(gitml.Corrupt, match="did it change"):
        store.put(source, wrong)
    assert keys(s3, bucket) == {}
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_tampered_object_is_corrupt_and_leaves_no_file(
    store: S3Store, s3: Any, bucket: str, tmp_path: Path
) -> None:
    source, sha = content(tmp_path, b"the real model")
    store.put(source, sha)
    s3.put_object(Bucket=bucket, Key=store.key(sha), Body=b"a poisoned model")
    target = tmp_path / "dl" / "model.pkl"
    with pytest.raises(gitml.Corrupt, match=rf"model\.pkl.*{sha}"):
        store.copy_to(sha, target, "model.pkl")
    assert os.listdir(tmp_path / "dl") == []  # neither the file nor a partial one
    with pytest.raises(gitml.Corrupt):
        store.read(sha, "model.pkl")


def test_missing_content_is_not_found(store: S3Store, tmp_path: Path) -> None:
    sha = "ab" * 32
    with pytest.raises(gitml.NotFound, match=f"{sha} is missing from the artifact store s3://"):
        store.copy_to(sha, tmp_path / "x", "x")
    assert not (tmp_path / "x").exists()
    with pytest.raises(gitml.NotFound, match="missing"):
        store.read(sha, "x")


def test_missing_answers_in_one_batch(store: S3Store, tmp_path: Path) -> None:
    held = []
    for i in range(5):
        source, sha = content(tmp_path, f"held {i}".encode(), f"{i}.bin")
        store.put(source, sha)
        held.append(sha)
    absent = {hashlib.sha256(f"absent {i}".encode()).hexdigest() for i in range(20)}
    assert store.missing([*held, *absent, *held]) == absent
    assert store.missing(held) == set()
    assert store.missing([]) == set()


def test_endpoint_from_the_environment(
    endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    opened = open_store(Config(artifact_store=f"s3://{bucket}"), tmp_path, tmp_path / "data")
    assert isinstance(opened, CachedStore) and opened.location == f"s3://{bucket}"
    source, sha = content(tmp_path, b"via the environment")
    opened.put(source, sha)
    assert S3Store(f"s3://{bucket}", endpoint_url=endpoint).has(sha)
    opened.close()


def test_a_bucket_that_does_not_exist_is_one_line(endpoint: str, s3: Any, tmp_path: Path) -> None:
    source, sha = content(tmp_path, b"anything")
    store = S3Store("s3://no-such-bucket-here/x", endpoint_url=endpoint)
    with pytest.raises(ArtifactStoreUnavailable, match="bucket 'no-such-bucket-here' does not"):
        store.put(source, sha)
    store.close()


@pytest.mark.parametrize(
    ("value", "message"),
    [("s3://B", "not a bucket name"), ("s3://", "not a bucket name"), ("gs://b/x", "folder or")],
)
def test_store_urls_gitml_does_not_know(value: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(gitml.InvalidInput, match=message):
        open_store(Config(artifact_store=value), tmp_path, tmp_path / "data")


def test_s3_location() -> None:
    assert s3_location("s3://bucket/a/b/") == ("bucket", "a/b")
    assert s3_location("s3://my.bucket-1") == ("my.bucket-1", "")
    assert s3_location("relative/folder") is None
    assert s3_location("/abs/folder") is None


# -- a Client with artifact_store: s3://… ---------------------------------------------------


def test_client_logs_large_artifacts_to_the_bucket(
    repo: Path, endpoint: str, bucket: str, s3: Any, tmp_path: Path
) -> None:
    write_config(
        repo,
        artifact_store=f"s3://{bucket}/runs",
        artifact_endpoint_url=endpoint,
        artifact_threshold=64,
    )
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
    assert list(keys(s3, bucket)) == [f"runs/{sha[:2]}/{sha[2:]}"]
    cached = repo / ".git" / "gitml" / "artifacts" / sha[:2] / sha[2:]
    assert cached.read_bytes() == data

    # Another machine (no cache) reads it from the bucket, checked.
    cached.unlink()
    assert client.read_artifact(run.id, "model/model.pt") == data
    out = client.download_artifacts(run.id, "model", tmp_path / "dl")
    assert (out / "model.pt").read_bytes() == data

    cached.unlink()
    s3.put_object(Bucket=bucket, Key=f"runs/{sha[:2]}/{sha[2:]}", Body=b"tampered")
    with pytest.raises(gitml.Corrupt, match=r"model/model\.pt"):
        client.download_artifacts(run.id, "model/model.pt", tmp_path / "bad")
    assert not (tmp_path / "bad" / "model.pt").exists()
    assert not cached.exists()
    client.close()


def test_client_commits_nothing_when_the_upload_fails(
    repo: Path, endpoint: str, s3: Any, tmp_path: Path
) -> None:
    write_config(
        repo,
        artifact_store="s3://bucket-that-was-never-made/runs",
        artifact_endpoint_url=endpoint,
        artifact_threshold=8,
    )
    client = gitml.Client()
    run = client.create_run()
    with pytest.raises(ArtifactStoreUnavailable, match="does not exist"):
        client.log_text(run.id, "more than eight bytes", "big.txt")
    assert client.list_artifacts(run.id) == []
    client.close()


def test_boto3_is_imported_only_when_the_bucket_is_used(repo: Path, bucket: str) -> None:
    write_config(repo, artifact_store=f"s3://{bucket}/runs", artifact_threshold=64)
    code = (
        "import sys, gitml; c = gitml.Client(); r = c.create_run(); "
        "c.log_text(r.id, 'small', 'a.txt'); c.close(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'boto3', 'botocore'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
