"""``s3://bucket/prefix``: an S3-compatible bucket (AWS, MinIO, Ceph, R2, …).

The endpoint is ``artifact_endpoint_url`` of ``.gitml.yaml``, else
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``, else AWS; credentials and
region come the AWS way (``AWS_ACCESS_KEY_ID``…, profiles, instance roles).
boto3 is the extra ``gitml[s3]``.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO

from gitml.artifacts.base import (
    DOWNLOAD,
    LIST,
    LOOKUP,
    PART_SIZE,
    REMOVE,
    UPLOAD,
    WORKERS,
    ArtifactStoreUnavailable,
    BucketStore,
    HashingReader,
    bucket_location,
)
from gitml.errors import InvalidInput

# S3 wants at least 5 MiB for every part but the last.
MIN_PART_SIZE = 5 * 1024 * 1024
_URL = re.compile(r"s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<prefix>.*))?\Z")
_NOT_THERE = ("404", "NoSuchKey", "NotFound")
_DENIED = ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch")

_session: Any = None
_session_lock = threading.Lock()


def _forget_session_in_child() -> None:
    # Another thread may hold the lock at fork: the child starts afresh.
    global _session, _session_lock
    _session, _session_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_session_in_child)


def s3_location(value: str) -> tuple[str, str]:
    return bucket_location(
        value,
        "s3",
        _URL,
        "bucket/prefix (3 to 63 characters: lowercase letters, digits, '.' and '-')",
    )


class S3Store(BucketStore):
    scheme = "s3"
    permissions = {  # noqa: RUF012 -- a constant table
        LOOKUP: "s3:GetObject (or s3:ListBucket)",
        LIST: "s3:ListBucket",
        UPLOAD: "s3:PutObject",
        DOWNLOAD: "s3:GetObject",
        REMOVE: "s3:DeleteObject",
    }
    credentials_hint = ""

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        part_size: int = PART_SIZE,
        workers: int = WORKERS,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise InvalidInput(f"part_size {part_size}: S3 parts are at least {MIN_PART_SIZE}")
        super().__init__(*s3_location(url), part_size=part_size, workers=workers)
        self.endpoint_url = (
            endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
            or None
        )
        self._transfer: Any = None

    def _connect(self) -> Any:
        try:
            import boto3.session
            from boto3.s3.transfer import TransferConfig
            from botocore.config import Config as BotoConfig
        except ImportError:
            raise ArtifactStoreUnavailable(
                f"artifact store {self.location} needs boto3: pip install 'gitml[s3]'"
            ) from None
        global _session
        # One session per process, so botocore reads its S3 model once; not boto3's
        # default one, and clients are made under a lock: sessions are not thread-safe
        # (clients are).
        with _session_lock:
            _session = _session or boto3.session.Session()
            client = _session.client(
                "s3",
                endpoint_url=self.endpoint_url,
                config=BotoConfig(max_pool_connections=max(10, self.workers)),
            )
        # Files above one part go up (and down) in parts, in parallel.
        self._transfer = TransferConfig(
            multipart_threshold=self.part_size,
            multipart_chunksize=self.part_size,
            max_concurrency=self.workers,
        )
        return client

    def _refusal(self, exc: Exception) -> tuple[str, str] | None:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            message = str(error.get("Message") or code)
            if code in _NOT_THERE:
                return "missing", message
            if code == "NoSuchBucket":
                return "no-bucket", message
            return ("denied" if code in _DENIED else "other"), message
        if isinstance(exc, BotoCoreError):
            if type(exc).__name__ == "NoCredentialsError":
                hint = " (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
                return "other", f"{exc}{hint}"
            return "other", str(exc)
        return None

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client().head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in _NOT_THERE:
                return False
            raise
        return True

    def _upload(self, key: str, reader: HashingReader, size: int) -> bool:
        # Non-seekable: s3transfer reads the stream once, in order, part after part.
        self.client().upload_fileobj(reader, self.bucket, key, Config=self._transfer)
        return True

    def _download(self, key: str, out: BinaryIO) -> str | None:
        # Ranges in parallel, written where they belong: the file is hashed afterwards.
        self.client().download_fileobj(self.bucket, key, out, Config=self._transfer)
        return None

    def _get(self, key: str) -> bytes:
        body = self.client().get_object(Bucket=self.bucket, Key=key)["Body"]
        try:
            data: bytes = body.read()
        finally:
            body.close()
        return data

    def _list(self, prefix: str) -> Iterator[tuple[str, int]]:
        pages = self.client().get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"], int(item["Size"])

    def _delete(self, key: str) -> None:
        self.client().delete_object(Bucket=self.bucket, Key=key)
