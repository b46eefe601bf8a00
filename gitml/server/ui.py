"""The web UI: static pages under ``/ui/`` and their JSON under ``/api/v1/ui``.

The pages are plain ES modules and CSS shipped in the wheel (``gitml/ui/static``):
no CDN, no build step and no network access at run time, which many
clusters do not have. The router is the URL's hash (``/ui/#/runs/<id>``), so
every page has a stable URL that the server answers with the same
``index.html``; ``/ui/<anything>`` that is not a file answers it too.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse, Response

from gitml.server import ui_api

STATIC = Path(__file__).resolve().parent.parent / "ui" / "static"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def attach_ui(app: FastAPI) -> None:
    """Add the UI's pages, and their JSON behind the read-token check, to ``app``."""
    for router in ui_api.ROUTERS:
        app.include_router(router)

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/ui/")

    @app.get("/ui", include_in_schema=False)
    def ui_bare() -> Response:
        return RedirectResponse("/ui/")

    @app.get("/ui/{path:path}", include_in_schema=False)
    def ui_file(path: str) -> Response:
        return static_file(path)


def static_file(path: str) -> Response:
    """A file of the UI, or ``index.html`` for any page URL that is not a file."""
    target = (STATIC / path).resolve()
    if not path or not target.is_relative_to(STATIC) or not target.is_file():
        target = STATIC / "index.html"
    return FileResponse(
        target,
        media_type=_TYPES.get(target.suffix, "application/octet-stream"),
        # Revalidate each time (an ETag answer is cheap): a new gitml shows new pages.
        headers={"Cache-Control": "no-cache"},
    )
