"""A real S3-compatible server for tests: moto in server mode on 127.0.0.1.

The server speaks S3 over HTTP like MinIO or AWS would, so the code under
test goes through boto3, botocore's signing and s3transfer's multipart
uploads unchanged. Credentials are fake and pinned; nothing leaves the host.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "gitml-test",
    "AWS_SECRET_ACCESS_KEY": "gitml-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Anything that would point boto3 at a real account or another endpoint.
UNSET = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
)


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """Start moto's S3 server on a free port of 127.0.0.1; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials, no profile, no endpoint from the developer's environment."""
    for key in UNSET:
        monkeypatch.delenv(key, raising=False)
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/gitml-test/config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/gitml-test/credentials")


def s3_client(endpoint: str) -> Any:
    """A plain boto3 client on the test server, to look at (or tamper with) the bucket."""
    import boto3.session

    return boto3.session.Session(
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
    ).client("s3", endpoint_url=endpoint)


def new_bucket(client: Any) -> str:
    """A fresh, empty bucket (a unique name, so tests share one server safely)."""
    name = f"gitml-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    return name


def keys(client: Any, bucket: str) -> dict[str, str]:
    """Every object of ``bucket``: key -> ETag."""
    out: dict[str, str] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            out[item["Key"]] = item["ETag"]
    return out
