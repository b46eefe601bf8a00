"""``gitml init``: a Git repository (if needed) and a validated ``.gitml.yaml``."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("init")
@click.option("--experiment", default=None, help="Default experiment for new runs.")
@click.option("--artifact-store", default=None, help="Folder for large artifacts.")
@click.option(
    "--artifact-threshold",
    type=int,
    default=None,
    help="Bytes above which artifacts leave Git (default 10 MB).",
)
@click.option(
    "--flush-interval", type=float, default=None, help="Seconds between metric commits (default 5)."
)
@click.option("--force", is_flag=True, help="Overwrite an existing .gitml.yaml.")
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
def command(
    directory: Path,
    experiment: str | None,
    artifact_store: str | None,
    artifact_threshold: int | None,
    flush_interval: float | None,
    force: bool,
) -> None:
    """Set up DIRECTORY for gitml: git init where needed, then write .gitml.yaml."""
    from gitml.format.init import init_project

    path, created_repo = init_project(
        directory,
        experiment=experiment,
        artifact_store=artifact_store,
        artifact_threshold=artifact_threshold,
        flush_interval=flush_interval,
        force=force,
    )
    if created_repo:
        click.echo(f"Initialized an empty Git repository in {directory.resolve()}")
    click.echo(f"Wrote {path}")
