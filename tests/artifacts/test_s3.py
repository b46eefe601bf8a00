"""What only the S3 store does, against moto's S3 server on 127.0.0.1 (the rest is the
suite every bucket store passes, ``test_bucket_stores.py``)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

import gitml
from gitml.artifacts import CachedStore, open_store
from gitml.artifacts.s3 import MIN_PART_SIZE, S3Store, s3_location
from gitml.format.records import Config

pytestmark = pytest.mark.parametrize("provider", ["s3"], indirect=True)


def test_parts_are_one_multipart_upload_and_a_refused_one_is_aborted(
    provider: Any, bucket: str, tmp_path: Path
) -> None:
    store = S3Store(f"s3://{bucket}/p", endpoint_url=provider.endpoint, part_size=MIN_PART_SIZE)
    data = os.urandom(12 * 1024 * 1024)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    store.put(source, sha)
    head = provider.client.head_object(Bucket=bucket, Key=store.key(sha))
    assert head["ETag"].strip('"').endswith("-3")  # S3's mark of a three-part upload

    with pytest.raises(gitml.Corrupt):
        store.put(source, hashlib.sha256(b"other").hexdigest())
    assert provider.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    store.close()


def test_endpoint_from_the_environment(
    provider: Any, bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", provider.endpoint)
    opened = open_store(Config(artifact_store=f"s3://{bucket}"), tmp_path, tmp_path / "data")
    assert isinstance(opened, CachedStore) and opened.location == f"s3://{bucket}"
    source = tmp_path / "f"
    source.write_bytes(b"via the environment")
    sha = hashlib.sha256(b"via the environment").hexdigest()
    opened.put(source, sha)
    assert S3Store(f"s3://{bucket}", endpoint_url=provider.endpoint).has(sha)
    opened.close()


def test_s3_location(provider: Any) -> None:
    assert s3_location("s3://bucket/a/b/") == ("bucket", "a/b")
    assert s3_location("s3://my.bucket-1") == ("my.bucket-1", "")
    for bad in ("s3://B", "s3://"):
        with pytest.raises(gitml.InvalidInput, match="not a bucket name"):
            s3_location(bad)
    with pytest.raises(gitml.InvalidInput, match="at least"):
        S3Store("s3://bucket", part_size=MIN_PART_SIZE - 1)
