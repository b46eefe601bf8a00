"""``gs://bucket/prefix``: a Google Cloud Storage bucket (extra ``gitml[gcs]``).

Credentials are found the way Google's client finds them (application
default credentials: ``GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud auth
application-default login``, the metadata server). ``STORAGE_EMULATOR_HOST``
points the client at an emulator, as Google's client reads it;
``artifact_endpoint_url`` of ``.gitml.yaml`` overrides the endpoint too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, BinaryIO

from gitml.artifacts.base import (
    DOWNLOAD,
    LIST,
    LOOKUP,
    REMOVE,
    UPLOAD,
    WORKERS,
    ArtifactStoreUnavailable,
    BucketStore,
    HashingReader,
    HashingWriter,
    bucket_location,
    widen_pool,
)

# Google's naming rules: 3 to 63 characters (222 with dots), lowercase letters,
# digits, '-', '_' and '.', starting and ending with a letter or digit.
_URL = re.compile(r"gs://(?P<bucket>[a-z0-9][a-z0-9._-]{1,220}[a-z0-9])(?:/(?P<prefix>.*))?\Z")
# Google's client sends a resumable upload in one chunk of up to 100 MiB by
# default; each chunk is one request after the other, so smaller ones only add
# round trips (8 MiB chunks: a third of its throughput to its emulator).
GCS_PART_SIZE = 100 * 1024 * 1024
# Resumable uploads send chunks of a multiple of 256 KiB.
CHUNK_UNIT = 256 * 1024


def gcs_location(value: str) -> tuple[str, str]:
    return bucket_location(
        value, "gs", _URL, "bucket/prefix (lowercase letters, digits, '.', '_' and '-')"
    )


class GCSStore(BucketStore):
    scheme = "gs"
    permissions = {  # noqa: RUF012 -- a constant table
        LOOKUP: "storage.objects.get",
        LIST: "storage.objects.list",
        UPLOAD: "storage.objects.create",
        DOWNLOAD: "storage.objects.get",
        REMOVE: "storage.objects.delete",
    }
    credentials_hint = (
        "; credentials come from GOOGLE_APPLICATION_CREDENTIALS or "
        "'gcloud auth application-default login'"
    )

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        part_size: int = GCS_PART_SIZE,
        workers: int = WORKERS,
    ) -> None:
        part_size -= part_size % CHUNK_UNIT
        super().__init__(*gcs_location(url), part_size=max(part_size, CHUNK_UNIT), workers=workers)
        self.endpoint_url = endpoint_url

    def _connect(self) -> Any:
        try:
            import google.auth.exceptions
            from google.cloud import storage
        except ImportError:
            raise ArtifactStoreUnavailable(
                f"artifact store {self.location} needs google-cloud-storage: "
                "pip install 'gitml[gcs]'"
            ) from None
        options = {"api_endpoint": self.endpoint_url} if self.endpoint_url else None
        try:
            client = storage.Client(client_options=options)
        except google.auth.exceptions.GoogleAuthError as exc:
            raise ArtifactStoreUnavailable(
                f"artifact store {self.location}: no Google credentials ({exc})"
                f"{self.credentials_hint}"
            ) from None
        widen_pool(client._http, self.workers)
        return client

    def _blob(self, key: str, chunk_size: int | None = None) -> Any:
        return self.client().bucket(self.bucket).blob(key, chunk_size=chunk_size)

    def _refusal(self, exc: Exception) -> tuple[str, str] | None:
        import google.auth.exceptions
        from google.api_core import exceptions as api
        from google.resumable_media import InvalidResponse

        if isinstance(exc, google.auth.exceptions.GoogleAuthError):
            return "other", f"{exc}{self.credentials_hint}"
        status: int | None = None
        if isinstance(exc, api.GoogleAPICallError):
            status, message = exc.code, exc.message
        elif isinstance(exc, InvalidResponse):
            status, message = exc.response.status_code, exc.response.text
        else:
            return None
        if status == 404:
            return ("no-bucket" if "bucket" in message.lower() else "missing"), message
        if status in (401, 403):
            return "denied", message
        return "other", f"{status} {message}"

    def _exists(self, key: str) -> bool:
        return bool(self._blob(key).exists())

    def _upload(self, key: str, reader: HashingReader, size: int) -> bool:
        from google.api_core.exceptions import PreconditionFailed

        # Above one part: a resumable upload, one chunk after another, finalised only
        # with the last one. ``if_generation_match=0``: never replace an object.
        blob = self._blob(key, self.part_size if size > self.part_size else None)
        try:
            blob.upload_from_file(reader, size=size, if_generation_match=0)
        except PreconditionFailed:
            return False  # another writer stored this content first
        return True

    def _download(self, key: str, out: BinaryIO) -> str | None:
        # One stream, in order: hashed as it is written (the caller checks the sha256;
        # no second checksum).
        with HashingWriter(out) as writer:
            self._blob(key).download_to_file(writer, checksum=None)
        return writer.hexdigest()

    def _get(self, key: str) -> bytes:
        data: bytes = self._blob(key).download_as_bytes(checksum=None)
        return data

    def _list(self, prefix: str) -> Iterator[tuple[str, int]]:
        for blob in self.client().list_blobs(self.bucket, prefix=prefix):
            yield blob.name, int(blob.size or 0)

    def _delete(self, key: str) -> None:
        self._blob(key).delete()

    def _disconnect(self, client: Any) -> None:
        client.close()
