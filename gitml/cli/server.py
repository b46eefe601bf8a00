"""``gitml server``: the tracking server's REST API over one repository."""

from __future__ import annotations

import os
from pathlib import Path

import click

from gitml.errors import InvalidInput

# What each uvicorn worker process reads to build its own app.
ENV_SETTINGS = "GITML_SERVER_SETTINGS"


@click.command("server")
@click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The repository to serve (default: the one you stand in).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("-p", "--port", default=5000, show_default=True, type=int)
@click.option("-w", "--workers", default=1, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Bearer tokens, one 'TOKEN read|write' per line; needed to bind beyond loopback.",
)
@click.option(
    "--max-body-bytes",
    default=16 * 1024 * 1024,
    show_default=True,
    type=click.IntRange(min=1),
    help="Largest JSON request body.",
)
@click.option(
    "--max-artifact-bytes",
    default=2 * 1024 * 1024 * 1024,
    show_default=True,
    type=click.IntRange(min=1),
    help="Largest artifact upload.",
)
def command(
    repo: Path | None,
    host: str,
    port: int,
    workers: int,
    token_file: Path | None,
    max_body_bytes: int,
    max_artifact_bytes: int,
) -> None:
    """Serve the tracking REST API (/api/v1, OpenAPI at /api/v1/openapi.json) and web UI (/ui/)."""
    import json

    import uvicorn

    try:
        from gitml.server.tracking_app import read_tokens
    except ModuleNotFoundError as exc:
        raise InvalidInput(
            f"gitml server needs {exc.name}, which is not installed: pip install 'gitml[server]'"
        ) from None
    from gitml.cli.models import is_loopback
    from gitml.git.store import Store

    tokens = read_tokens(token_file) if token_file is not None else None
    if tokens is None and not is_loopback(host):
        raise InvalidInput(
            f"--host {host} is reachable from other machines; give --token-file so that "
            "clients must authenticate, or bind 127.0.0.1"
        )
    root = Store.discover(repo or Path.cwd()).root
    settings = {
        "repo": str(root),
        "token_file": str(token_file) if token_file else None,
        "max_body_bytes": max_body_bytes,
        "max_artifact_bytes": max_artifact_bytes,
    }
    click.echo(f"serving {root} on http://{host}:{port} ({workers} worker(s))", err=True)
    os.environ[ENV_SETTINGS] = json.dumps(settings)
    uvicorn.run(
        "gitml.cli.server:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_level="warning",
        ws="none",
    )


def app_from_environment() -> object:
    """The app for one worker, from the settings ``command`` left in the environment."""
    import json

    from gitml.server.tracking_app import ServerSettings, create_app, read_tokens

    settings = json.loads(os.environ[ENV_SETTINGS])
    token_file = settings["token_file"]
    return create_app(
        ServerSettings(
            repo=Path(settings["repo"]),
            tokens=read_tokens(Path(token_file)) if token_file else None,
            max_body_bytes=settings["max_body_bytes"],
            max_artifact_bytes=settings["max_artifact_bytes"],
            # Without tokens it binds loopback only; a browser's request for a
            # rebound DNS name must not reach it either.
            loopback_only=not token_file,
        )
    )
