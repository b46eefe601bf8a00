"""Which store an ``artifact_store`` value names (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

import gitml
from gitml.artifacts import configured_store, open_store
from gitml.artifacts.azure import AzureBlobStore, azure_location
from gitml.artifacts.folder import ExternalStore
from gitml.artifacts.gcs import GCSStore
from gitml.artifacts.s3 import S3Store
from gitml.format.records import Config


@pytest.mark.parametrize(
    ("value", "kind", "location"),
    [
        ("s3://bucket/a/b/", S3Store, "s3://bucket/a/b"),
        ("gs://my_bucket.x/runs", GCSStore, "gs://my_bucket.x/runs"),
        ("az://container/p", AzureBlobStore, "az://container/p"),
        (
            "wasbs://models@acct1.blob.core.windows.net/churn",
            AzureBlobStore,
            "wasbs://models@acct1.blob.core.windows.net/churn",
        ),
        ("abfss://models@acct1.dfs.core.windows.net", AzureBlobStore, None),
    ],
)
def test_a_url_names_its_provider(value: str, kind: type, location: str | None) -> None:
    store = configured_store(Config(artifact_store=value), Path("/r"), Path("/r/.git/gitml"))
    assert isinstance(store, kind)
    assert store.location == (location or value)


def test_azure_account_urls() -> None:
    assert azure_location("wasbs://models@acct1.blob.core.windows.net/a/b") == (
        "models",
        "a/b",
        "https://acct1.blob.core.windows.net",
    )
    # ADLS Gen2 accounts answer the Blob API on their blob endpoint.
    assert azure_location("abfss://models@acct1.dfs.core.windows.net") == (
        "models",
        "",
        "https://acct1.blob.core.windows.net",
    )
    assert azure_location("az://models/x") == ("models", "x", None)


def test_a_folder_is_read_in_place(tmp_path: Path) -> None:
    store = open_store(Config(artifact_store="shared"), tmp_path, tmp_path / "data")
    assert isinstance(store, ExternalStore) and store.root == tmp_path / "shared"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("s3://B", "not a bucket name"),
        ("gs://x", "not a bucket name"),
        ("az://-bad-/p", "container names"),
        ("wasbs://models/p", "container names"),  # wasbs names its account
        ("az://c@acct.blob.core.windows.net/p", "container names"),  # az:// does not
        ("ftp://host/x", "folder or at s3://"),
    ],
)
def test_store_urls_gitml_does_not_know(value: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(gitml.InvalidInput, match=message):
        open_store(Config(artifact_store=value), tmp_path, tmp_path / "data")


def test_azure_without_an_account_says_how_to_name_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    store = AzureBlobStore("az://models/p")
    with pytest.raises(gitml.GitmlError, match="which storage account"):
        store.has("ab" * 32)
