"""``gitml ui``: the web UI over a local repository, with no server to set up."""

from __future__ import annotations

from pathlib import Path

import click

from gitml.errors import InvalidInput


@click.command("ui")
@click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The repository to show (default: the one you stand in).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to bind.")
@click.option("-p", "--port", default=5050, show_default=True, type=int)
@click.option(
    "--allow-writes",
    is_flag=True,
    help="Also serve the API's routes that write (create runs, register, promote).",
)
def command(repo: Path | None, host: str, port: int, allow_writes: bool) -> None:
    """Browse runs, metrics, artifacts, models and stages at http://HOST:PORT/ui/.

    The same pages as `gitml server`, without tokens: it binds loopback only,
    answers only requests for a loopback Host name, and is read-only unless
    --allow-writes is given.
    """
    import uvicorn

    try:
        from gitml.server.tracking_app import ServerSettings, create_app
    except ModuleNotFoundError as exc:
        raise InvalidInput(
            f"gitml ui needs {exc.name}, which is not installed: pip install 'gitml[server]'"
        ) from None
    from gitml.cli.models import is_loopback
    from gitml.git.store import Store

    if not is_loopback(host):
        raise InvalidInput(
            f"--host {host} is reachable from other machines and gitml ui has no tokens; "
            "bind 127.0.0.1, or run `gitml server --token-file` to share the UI"
        )
    root = Store.discover(repo or Path.cwd()).root
    app = create_app(ServerSettings(repo=root, loopback_only=True, read_only=not allow_writes))
    click.echo(f"gitml ui: {root} at http://{host}:{port}/ui/ (Ctrl-C stops)", err=True)
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning", ws="none")
