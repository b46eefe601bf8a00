"""Azure Blob Storage (extra ``gitml[azure]``), in the forms MLflow users know.

- ``wasbs://container@account.blob.core.windows.net/prefix`` (and ``wasb://``),
- ``abfss://container@account.dfs.core.windows.net/prefix`` (and ``abfs://``):
  an ADLS Gen2 account, reached through its Blob endpoint,
- ``az://container/prefix``: the account comes from the connection string or
  ``artifact_endpoint_url`` (an emulator's ``http://127.0.0.1:10000/devstoreaccount1``).

Credentials, in MLflow's order: ``AZURE_STORAGE_CONNECTION_STRING``, else
``AZURE_STORAGE_ACCESS_KEY`` (the account's key), else
``DefaultAzureCredential`` (environment, managed identity, ``az login``).
"""

from __future__ import annotations

import os
import re
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
    widen_pool,
)
from gitml.errors import InvalidInput

# Container names: 3 to 63 lowercase letters, digits and single hyphens.
_CONTAINER = r"(?P<bucket>[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62})"
_URL = re.compile(
    r"(?P<scheme>az|wasbs?|abfss?)://" + _CONTAINER + r"(?:@(?P<account>[a-z0-9]{3,24})"
    r"\.(?P<service>blob|dfs)\.(?P<suffix>core\.windows\.net|[a-z0-9.-]+))?"
    r"(?:/(?P<prefix>.*))?\Z"
)
_DENIED = (401, 403)
_ROLE = "Storage Blob Data Contributor"


def azure_location(value: str) -> tuple[str, str, str | None]:
    """``(container, prefix, account URL or None)`` of an Azure artifact store URL."""
    match = _URL.match(value)
    if match is None or (match["scheme"] != "az") != bool(match["account"]):
        raise InvalidInput(
            f"artifact_store {value!r}: use az://container/prefix, "
            "wasbs://container@account.blob.core.windows.net/prefix or "
            "abfss://container@account.dfs.core.windows.net/prefix (container names: 3 to 63 "
            "lowercase letters, digits and hyphens)"
        )
    account_url = None
    if match["account"]:
        account_url = f"https://{match['account']}.blob.{match['suffix']}"
    return match["bucket"], (match["prefix"] or "").strip("/"), account_url


class AzureBlobStore(BucketStore):
    scheme = "az"
    permissions = {  # noqa: RUF012 -- a constant table
        LOOKUP: f"Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read ({_ROLE})",
        LIST: f"Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read ({_ROLE})",
        UPLOAD: f"Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write ({_ROLE})",
        DOWNLOAD: f"Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read ({_ROLE})",
        REMOVE: f"Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete ({_ROLE})",
    }
    credentials_hint = (
        "; credentials come from AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_ACCESS_KEY "
        "or DefaultAzureCredential"
    )

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        part_size: int = PART_SIZE,
        workers: int = WORKERS,
    ) -> None:
        container, prefix, account_url = azure_location(url)
        super().__init__(container, prefix, part_size=part_size, workers=workers)
        self.url = url.rstrip("/")
        self.account_url = account_url
        self.endpoint_url = endpoint_url

    @property
    def location(self) -> str:
        return self.url

    def _connect(self) -> Any:
        try:
            from azure.storage.blob import BlobServiceClient
        except ImportError:
            raise ArtifactStoreUnavailable(
                f"artifact store {self.location} needs azure-storage-blob: "
                "pip install 'gitml[azure]'"
            ) from None
        import requests
        from urllib3.util.retry import Retry

        # A session with a connection per worker; retries stay azure-core's, as in the
        # session it would make. Blocks of one part: above it, uploads stage blocks in
        # parallel and commit the list at the end, downloads fetch ranges in parallel.
        session = requests.Session()
        widen_pool(session, self.workers, max_retries=Retry(total=False, redirect=False))
        sizes: dict[str, Any] = {
            "session": session,
            "max_single_put_size": self.part_size,
            "max_block_size": self.part_size,
            "max_single_get_size": self.part_size,
            "max_chunk_get_size": self.part_size,
        }
        connection = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
        if connection and not self.endpoint_url:
            return BlobServiceClient.from_connection_string(connection, **sizes)
        url = self.endpoint_url or self.account_url
        if not url:
            raise ArtifactStoreUnavailable(
                f"artifact store {self.location}: which storage account? Name it "
                "(wasbs://container@account.blob.core.windows.net/prefix), or set "
                "AZURE_STORAGE_CONNECTION_STRING or artifact_endpoint_url"
            )
        credential: Any = (
            _shared_key(connection) if connection else os.environ.get("AZURE_STORAGE_ACCESS_KEY")
        )
        if not credential:
            try:
                from azure.identity import DefaultAzureCredential
            except ImportError:
                raise ArtifactStoreUnavailable(
                    f"artifact store {self.location}: no AZURE_STORAGE_CONNECTION_STRING or "
                    "AZURE_STORAGE_ACCESS_KEY, and DefaultAzureCredential needs "
                    "azure-identity: pip install 'gitml[azure]'"
                ) from None
            credential = DefaultAzureCredential()
        return BlobServiceClient(url, credential=credential, **sizes)

    def _blob(self, key: str) -> Any:
        return self.client().get_blob_client(self.bucket, key)

    def _refusal(self, exc: Exception) -> tuple[str, str] | None:
        from azure.core.exceptions import AzureError, HttpResponseError

        if isinstance(exc, HttpResponseError):
            code = str(getattr(exc, "error_code", None) or "")
            message = (exc.reason or code) if exc.message is None else exc.message.splitlines()[0]
            if code == "ContainerNotFound":
                return "no-bucket", message
            if exc.status_code == 404:
                return "missing", message
            if exc.status_code in _DENIED:
                return "denied", message
            return "other", message
        if isinstance(exc, AzureError):
            return "other", f"{exc}{self.credentials_hint}"
        return None

    def _exists(self, key: str) -> bool:
        return bool(self._blob(key).exists())

    def _upload(self, key: str, reader: HashingReader, size: int) -> bool:
        from azure.core.exceptions import ResourceExistsError

        try:
            # Never replace an object: a blob is committed only with its last block.
            self._blob(key).upload_blob(
                reader, length=size, overwrite=False, max_concurrency=self.workers
            )
        except ResourceExistsError:
            return False  # another writer stored this content first
        return True

    def _download(self, key: str, out: BinaryIO) -> str | None:
        # Ranges in parallel, written where they belong: the file is hashed afterwards.
        self._blob(key).download_blob(max_concurrency=self.workers).readinto(out)
        return None

    def _get(self, key: str) -> bytes:
        data: bytes = self._blob(key).download_blob(max_concurrency=self.workers).readall()
        return data

    def _list(self, prefix: str) -> Iterator[tuple[str, int]]:
        container = self.client().get_container_client(self.bucket)
        for blob in container.list_blobs(name_starts_with=prefix, include=["metadata"]):
            # An ADLS Gen2 account lists each folder as an empty blob of that name.
            if (blob.metadata or {}).get("hdi_isfolder") != "true":
                yield blob.name, int(blob.size)

    def _delete(self, key: str) -> None:
        self._blob(key).delete_blob()


def _shared_key(connection: str) -> dict[str, str]:
    """The account name and key of a connection string (for another endpoint than its own)."""
    fields = dict(part.split("=", 1) for part in connection.split(";") if "=" in part)
    try:
        return {"account_name": fields["AccountName"], "account_key": fields["AccountKey"]}
    except KeyError as exc:
        raise ArtifactStoreUnavailable(
            f"AZURE_STORAGE_CONNECTION_STRING has no {exc.args[0]}"
        ) from None
