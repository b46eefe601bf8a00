"""``MLFLOW_TRACKING_URI=gitml:<path>``: MLflow's own client on a gitml repository, no server.

The one module of gitml that imports MLflow (``pip install 'gitml[mlflow]'``).
MLflow finds it through the entry points ``mlflow.tracking_store``,
``mlflow.model_registry_store`` and ``mlflow.artifact_repository`` (scheme
``gitml``). The stores are MLflow's REST stores with the HTTP call replaced
by a call of ``MlflowApi`` in this process: the same translation
``gitml server`` serves, so the two cannot drift apart. ``gitml:.`` is the
repository of the current directory, ``gitml:/abs/path`` any other.
"""

from __future__ import annotations

import json
import os
import re
import threading
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from mlflow.entities import FileInfo
from mlflow.exceptions import MlflowException
from mlflow.protos import databricks_pb2
from mlflow.store.artifact.artifact_repo import ArtifactRepository
from mlflow.store.model_registry.rest_store import RestStore as RegistryRestStore
from mlflow.store.tracking.rest_store import RestStore
from mlflow.utils.proto_json_utils import parse_dict
from mlflow.utils.rest_utils import MlflowHostCreds

from gitml.errors import GitmlError
from gitml.mlflow.api import MlflowApi, MlflowApiError
from gitml.tracking.client import Client

SCHEME = "gitml"
_API_PREFIX = "/api/2.0/mlflow/"
# gitml:<repository>/<experiment>/<run>/artifacts[/<path>]: the run id is 32 hex digits.
_ARTIFACT_URI = re.compile(
    r"^gitml:(?P<repo>.+?)/(?P<where>[^/]+/[0-9a-f]{32}/artifacts)(?:/(?P<path>.*))?$"
)

_apis: dict[Path, MlflowApi] = {}
_apis_lock = threading.Lock()


def repository(uri: str) -> Path:
    """The repository ``gitml:<path>`` names (relative paths from the current directory)."""
    if not uri.startswith(f"{SCHEME}:"):
        raise MlflowException(f"{uri!r} is not a gitml: URI (gitml:. or gitml:/path/to/repo)")
    path = uri[len(SCHEME) + 1 :] or "."
    if path.startswith("//"):  # gitml:///abs/path, as file: URIs are written
        path = path[2:]
    return Path(path).expanduser().resolve()


def api_for(uri: str) -> MlflowApi:
    """One ``MlflowApi`` (one gitml ``Client``) per repository, shared by every store."""
    root = repository(uri)
    with _apis_lock:
        api = _apis.get(root)
        if api is None:
            try:
                client = Client(str(root))
            except GitmlError as exc:
                raise MlflowException(
                    f"{uri}: {exc}", databricks_pb2.INVALID_PARAMETER_VALUE
                ) from None
            api = _apis[root] = MlflowApi.over(client, f"{SCHEME}:{root}")
        return api


def _no_host() -> MlflowHostCreds:
    # Never used for a request: every call goes to MlflowApi in this process.
    return MlflowHostCreds("gitml://in-process")


def _call(api: MlflowApi, endpoint: str, method: str, json_body: Any, response_proto: Any) -> Any:
    """What ``rest_utils.call_endpoint`` does, with ``MlflowApi`` as the server."""
    if isinstance(json_body, str):
        body = json.loads(json_body) if json_body else {}
    else:
        body = dict(json_body or {})
    if not endpoint.startswith(_API_PREFIX):
        raise MlflowException(
            f"{method} {endpoint}: gitml does not implement MLflow's 3.0 API (traces)",
            databricks_pb2.NOT_IMPLEMENTED,
        )
    try:
        answer = api.handle(method, endpoint[len(_API_PREFIX) :], body)
    except MlflowApiError as exc:
        raise MlflowException(
            exc.message, getattr(databricks_pb2, exc.error_code, databricks_pb2.INTERNAL_ERROR)
        ) from None
    parse_dict(answer, response_proto)
    return response_proto


class GitmlTrackingStore(RestStore):  # type: ignore[misc]  # MLflow has no type hints
    """MLflow's tracking store over a gitml repository (``gitml:<path>``)."""

    def __init__(self, store_uri: str, artifact_uri: str | None = None, **_: Any) -> None:
        super().__init__(_no_host)
        self._gitml = api_for(store_uri)

    def _call_endpoint(
        self,
        api: Any,
        json_body: Any = None,
        endpoint: str | None = None,
        retry_timeout_seconds: float | None = None,
        response_proto: Any = None,
    ) -> Any:
        table = self._V3_METHOD_TO_INFO if api in self._V3_APIS else self._METHOD_TO_INFO
        path, method = table[api]
        return _call(
            self._gitml, endpoint or path, method, json_body, response_proto or api.Response()
        )


class GitmlRegistryStore(RegistryRestStore):  # type: ignore[misc]
    """MLflow's model registry over a gitml repository: versions, and stage branches as
    aliases and stages."""

    def __init__(self, store_uri: str, tracking_uri: str | None = None, **_: Any) -> None:
        super().__init__(_no_host)
        self._gitml = api_for(store_uri)

    def _call_endpoint(
        self,
        api: Any,
        json_body: Any,
        call_all_endpoints: bool = False,
        extra_headers: Any = None,
    ) -> Any:
        endpoints = (
            self._get_all_endpoints_from_method(api)
            if call_all_endpoints
            else [self._get_endpoint_from_method(api)]
        )
        for number, (path, method) in enumerate(endpoints):
            try:
                return _call(self._gitml, path, method, json_body, api.Response())
            except MlflowException as exc:
                if exc.error_code != "ENDPOINT_NOT_FOUND" or number == len(endpoints) - 1:
                    raise
        raise MlflowException(f"no endpoint for {api.__name__}")


class GitmlArtifactRepository(ArtifactRepository):  # type: ignore[misc]
    """A run's artifacts in a gitml repository: ``gitml:<repo>/<experiment>/<run>/artifacts``."""

    def __init__(self, artifact_uri: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(artifact_uri, *args, **kwargs)
        match = _ARTIFACT_URI.match(artifact_uri.rstrip("/"))
        if match is None:
            raise MlflowException(
                f"{artifact_uri!r} is not a gitml artifact URI "
                "(gitml:<repository>/<experiment>/<run>/artifacts/<path>)"
            )
        self._gitml = api_for(f"{SCHEME}:{match.group('repo')}")
        self._where = match.group("where")
        self._base = match.group("path") or ""

    def _location(self, path: str | None) -> str:
        parts = [p for p in (self._base, (path or "").strip("/")) if p]
        return "/".join([self._where, *parts])

    def _run_path(self, artifact_path: str | None) -> tuple[str, str | None]:
        try:
            run, rel = self._gitml.artifact_location(self._location(artifact_path))
        except MlflowApiError as exc:
            raise MlflowException(exc.message) from None
        return run.id, rel or None

    def log_artifact(self, local_file: str, artifact_path: str | None = None) -> None:
        run_id, rel = self._run_path(artifact_path)
        self._gitml.client.log_artifact(run_id, local_file, rel)

    def log_artifacts(self, local_dir: str, artifact_path: str | None = None) -> None:
        run_id, rel = self._run_path(artifact_path)
        self._gitml.client.log_artifacts(run_id, local_dir, rel)

    def list_artifacts(self, path: str | None = None) -> list[FileInfo]:
        try:
            listed = self._gitml.list_artifact_dir(self._location(path))
        except MlflowApiError as exc:
            raise MlflowException(exc.message) from None
        prefix = (path or "").strip("/")
        return [
            FileInfo(
                f"{prefix}/{entry['path']}" if prefix else entry["path"],
                entry["is_dir"],
                entry.get("file_size"),
            )
            for entry in listed
        ]

    def _download_file(self, remote_file_path: str, local_path: str) -> None:
        try:
            data = self._gitml.download_artifact(self._location(remote_file_path))
        except MlflowApiError as exc:
            raise MlflowException(
                exc.message, getattr(databricks_pb2, exc.error_code, databricks_pb2.INTERNAL_ERROR)
            ) from None
        os.makedirs(os.path.dirname(local_path) or ".", exist_ok=True)
        Path(local_path).write_bytes(data)

    def delete_artifacts(self, artifact_path: str | None = None) -> None:
        raise MlflowException(
            "gitml keeps artifacts in Git history, which it never rewrites",
            databricks_pb2.NOT_IMPLEMENTED,
        )


def register() -> None:
    """Register the ``gitml`` scheme with MLflow where gitml's entry points are not installed
    (a checkout run without ``pip install``); with them installed, MLflow has done it."""
    installed = {e.name for e in entry_points(group="mlflow.tracking_store")}
    if SCHEME in installed:
        return
    from mlflow.store.artifact.artifact_repository_registry import (
        _artifact_repository_registry,
    )
    from mlflow.tracking._model_registry.utils import _get_store_registry
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    _tracking_store_registry.register(SCHEME, GitmlTrackingStore)
    _get_store_registry().register(SCHEME, GitmlRegistryStore)
    _artifact_repository_registry.register(SCHEME, GitmlArtifactRepository)
