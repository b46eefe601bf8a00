"""MLflow's REST API over HTTP, as ``gitml server`` mounts it.

``/api/2.0/mlflow/...`` and ``/ajax-api/2.0/mlflow/...`` (MLflow's web UI
calls the latter) go to ``MlflowApi.handle``; ``/api/2.0/mlflow-artifacts/
artifacts/<experiment>/<run>/artifacts/<path>`` is MLflow's proxied artifact
API (``mlflow-artifacts:`` URIs) over the runs' artifacts. MLflow's client sends
``MLFLOW_TRACKING_TOKEN`` as ``Authorization: Bearer``, checked by
``gitml.server.auth.requires`` as on every other route: none (or an unknown
one) is MLflow's 401, a read token on a request that writes is its 403.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gitml.mlflow.api import MlflowApi, MlflowApiError
from gitml.server.auth import Refused, requires

API_PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
ARTIFACT_PREFIXES = ("/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts")
# MLflow 3's client sends its 3.0 routes (traces) here; none of them is implemented.
V3_PREFIXES = ("/api/3.0/mlflow", "/ajax-api/3.0/mlflow")
_METHODS = ["GET", "POST", "PATCH", "DELETE", "PUT"]


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _error(exc: MlflowApiError) -> Response:
    return _json(exc.body(), exc.http_status)


def _query(request: Request) -> dict[str, Any]:
    """A GET's query as MLflow's client sends it (a repeated key is a list)."""
    out: dict[str, Any] = {}
    for key, value in request.query_params.multi_items():
        if key in out:
            previous = out[key]
            out[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            out[key] = value
    return out


def _check(request: Request, writes: bool) -> None:
    """``requires`` on the request (``BearerAuth`` put the server's tokens in its scope), its
    refusal in MLflow's shape: 401 UNAUTHENTICATED or 403 PERMISSION_DENIED."""
    try:
        requires(request.scope, "write" if writes else "read")
    except Refused as exc:
        raise MlflowApiError(exc.error_code, exc.message, exc.status) from None


def api_app(api: MlflowApi) -> Starlette:
    """``/<path>`` (below an API prefix) to ``MlflowApi.handle``."""

    async def endpoint(request: Request) -> Response:
        method = request.method
        path = request.path_params["path"]
        try:
            _check(request, writes=method != "GET")
            if method == "GET":
                body: Any = _query(request)
            else:
                raw = await request.body()
                try:
                    body = orjson.loads(raw) if raw.strip() else {}
                except orjson.JSONDecodeError as exc:
                    raise MlflowApiError(
                        "MALFORMED_REQUEST", f"request body is not JSON: {exc}", 400
                    ) from None
                if not isinstance(body, dict):
                    raise MlflowApiError("MALFORMED_REQUEST", "request body is not an object", 400)
            answer = await run_in_threadpool(api.handle, method, path, body)
        except MlflowApiError as exc:
            return _error(exc)
        return _json(answer)

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=_METHODS)])


# What MLflow 3's client asks of a server before using it (it asks again after any
# answer but 200): no workspaces, no trace archival, no multipart or presigned transfers.
SERVER_INFO = {
    "store_type": None,
    "workspaces_enabled": False,
    "trace_archival_enabled": False,
    "multipart_uploads_enabled": False,
    "multipart_downloads_enabled": False,
    "presigned_upload_run_id_supported": False,
    "presigned_upload_model_id_supported": False,
}


def v3_app() -> Starlette:
    async def endpoint(request: Request) -> Response:
        if request.method == "GET" and request.path_params["path"] == "server-info":
            return _json(SERVER_INFO)  # MLflow answers it without a login too
        try:
            _check(request, writes=False)
            raise MlflowApiError(
                "NOT_IMPLEMENTED",
                f"{request.method} {request.url.path}: gitml does not implement MLflow's "
                "3.0 API (traces)",
            )
        except MlflowApiError as exc:
            return _error(exc)

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=_METHODS)])


def artifacts_app(api: MlflowApi) -> Starlette:
    """MLflow's proxied artifact API: upload, download and list below ``/artifacts``."""

    def guarded(writes: bool, func: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                _check(request, writes)
                answer: Response = await func(request)
            except MlflowApiError as exc:
                return _error(exc)
            return answer

        return endpoint

    async def upload(request: Request) -> Response:
        data = await request.body()
        await run_in_threadpool(api.upload_artifact, request.path_params["path"], data)
        return _json({})

    async def download(request: Request) -> Response:
        data = await run_in_threadpool(api.download_artifact, request.path_params["path"])
        return Response(data, media_type="application/octet-stream")

    async def listing(request: Request) -> Response:
        path = request.query_params.get("path", "")
        files = await run_in_threadpool(api.list_artifact_dir, path)
        return _json({"files": files})

    async def not_here(request: Request) -> Response:
        raise MlflowApiError(
            "NOT_IMPLEMENTED",
            f"{request.method} {request.url.path}: gitml keeps artifacts in Git history, "
            "which it never rewrites (no deletes, no multipart uploads)",
        )

    return Starlette(
        routes=[
            Route("/artifacts", guarded(False, listing), methods=["GET"]),
            Route("/artifacts/{path:path}", guarded(True, upload), methods=["PUT"]),
            Route("/artifacts/{path:path}", guarded(False, download), methods=["GET"]),
            Route("/artifacts/{path:path}", guarded(True, not_here), methods=["DELETE"]),
            Route("/mpu/{path:path}", guarded(True, not_here), methods=["POST"]),
        ]
    )


def mount_mlflow(app: Starlette, api: MlflowApi) -> None:
    """MLflow's API and its proxied artifact API on ``app``, whose ``BearerAuth`` decides
    which requests a token may make."""
    rest = api_app(api)
    artifacts = artifacts_app(api)
    v3 = v3_app()
    for prefix in API_PREFIXES:
        app.mount(prefix, rest)
    for prefix in ARTIFACT_PREFIXES:
        app.mount(prefix, artifacts)
    for prefix in V3_PREFIXES:
        app.mount(prefix, v3)
