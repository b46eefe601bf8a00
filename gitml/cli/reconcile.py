"""``gitml reconcile``: serve whatever a stage branch declares, following it."""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from pathlib import Path

import click

from gitml.errors import InvalidInput

# What each uvicorn worker process reads to build its own reconciler.
ENV_SETTINGS = "GITML_RECONCILE_SETTINGS"


@click.command("reconcile")
@click.option("--stage", default="production", show_default=True, help="The stage to follow.")
@click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Follow a local repository (default: the one you stand in).",
)
@click.option("--remote", default=None, help="Follow a remote repository URL instead.")
@click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where a followed remote is fetched to (default: ~/.cache/gitml/reconcile/<hash>).",
)
@click.option("--interval", default="2s", show_default=True, help="How often to look: 2s, 500ms.")
@click.option(
    "--fetch-timeout",
    default=None,
    help="Kill a git call to the remote that has not finished after this long "
    "(default: 5 intervals, at least 10s).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("-p", "--port", default=8080, show_default=True, type=int)
@click.option("-w", "--workers", default=1, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Bearer tokens, one 'TOKEN read|write' per line (scoring: read, /hooks/git: write); "
    "needed off loopback.",
)
@click.option(
    "--allow-empty",
    is_flag=True,
    help="Serve a declaration with no models (otherwise such a commit is refused).",
)
def command(
    stage: str,
    repo: Path | None,
    remote: str | None,
    cache: Path | None,
    interval: str,
    fetch_timeout: str | None,
    host: str,
    port: int,
    workers: int,
    token_file: Path | None,
    allow_empty: bool,
) -> None:
    """Serve the models STAGE declares, and follow the branch gitml/STAGE."""
    import json

    import uvicorn

    from gitml.cli.models import is_loopback
    from gitml.registry.stages import check_stage
    from gitml.server.auth import read_tokens
    from gitml.serving.reconcile import parse_interval, redact

    check_stage(stage)
    seconds = parse_interval(interval)
    deadline = max(5 * seconds, 10.0) if fetch_timeout is None else parse_interval(fetch_timeout)
    if repo is not None and remote is not None:
        raise InvalidInput("give --repo or --remote, not both")
    if cache is not None and remote is None:
        raise InvalidInput("--cache is where a followed --remote is fetched to; give --remote")
    tokens = read_tokens(token_file) if token_file is not None else None
    if not is_loopback(host) and not tokens:
        raise InvalidInput(
            f"--host {host} is reachable from other machines; give --token-file so that "
            "/invocations and /hooks/git need a bearer token, or bind 127.0.0.1"
        )
    if remote is not None and Path(remote).exists():
        remote = str(Path(remote).resolve())  # a local path, as the cache's git will read it
    if remote is not None and cache is None:
        key = hashlib.sha256(f"{remote}\n{stage}".encode()).hexdigest()[:16]
        cache = Path.home() / ".cache" / "gitml" / "reconcile" / key
    settings = {
        "stage": stage,
        "repo": str(_repo_root(repo)) if remote is None else None,
        "remote": remote,
        "cache": str(cache) if cache is not None else None,
        "interval": seconds,
        "fetch_timeout": deadline,
        "tokens": tokens,
        "allow_empty": allow_empty,
    }
    where = redact(remote) if remote is not None else settings["repo"]
    click.echo(f"following gitml/{stage} of {where} on http://{host}:{port}", err=True)
    server = {"host": host, "port": port, "access_log": False, "log_level": "warning"}
    if workers == 1:
        uvicorn.run(build_app(settings), ws="none", **server)  # type: ignore[arg-type]
        return
    # Each worker is a process with its own reconciler: they converge as replicas do.
    os.environ[ENV_SETTINGS] = json.dumps(settings)
    uvicorn.run(
        "gitml.cli.reconcile:app_from_environment",
        factory=True,
        workers=workers,
        ws="none",
        **server,  # type: ignore[arg-type]
    )


def build_app(settings: dict[str, object]) -> object:
    """The reconciler's ASGI app for ``settings`` (what ``command`` collected).

    Called once per process: in each uvicorn worker too, so each worker has
    its own reconciler and its own log handler.
    """
    from gitml.format import config as config_file
    from gitml.format.records import Config
    from gitml.git.store import Store
    from gitml.server.auth import LoopbackHostOnly, Tokens
    from gitml.serving.reconcile import Reconciler, RemoteSource, Source
    from gitml.serving.reconcile_app import create_app

    interval = float(str(settings["interval"]))
    if settings["remote"]:
        # A followed remote's settings are its own; the defaults stand in for them.
        source: Source = RemoteSource(
            str(settings["remote"]),
            Path(str(settings["cache"])),
            fetch_timeout=float(str(settings["fetch_timeout"])),
        )
        config = Config()
    else:
        store = Store(str(settings["repo"]))
        source = Source(store)
        config = config_file.load(store.root)
    _log_events()
    reconciler = Reconciler(
        source,
        str(settings["stage"]),
        config,
        allow_empty=bool(settings["allow_empty"]),
        # A git call longer than an interval (and a second) is reported as a stall.
        stall_after=max(interval, 1.0),
    )
    tokens: Tokens | None = settings["tokens"]  # type: ignore[assignment]
    app = create_app(reconciler, interval=interval, tokens=tokens)
    # Without tokens it binds loopback only: a page of another site, its name
    # rebound to 127.0.0.1, must not reach it through the browser either.
    return app if tokens else LoopbackHostOnly(app)


def app_from_environment() -> object:
    import json

    return build_app(json.loads(os.environ[ENV_SETTINGS]))


def _log_events() -> None:
    """The reconciler's events, one JSON object a line, on stderr (once per process)."""
    log = logging.getLogger("gitml.serving.reconcile")
    if not any(getattr(h, "gitml_events", False) for h in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.gitml_events = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    log.setLevel(logging.INFO)


def _repo_root(repo: Path | None) -> Path:
    from gitml.git.store import Store

    return Store.discover(repo or Path.cwd()).root
