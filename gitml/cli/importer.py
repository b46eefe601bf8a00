"""``gitml import``: copy another system's store into the repository you stand in."""

from __future__ import annotations

import sys
from typing import Any

import click

from gitml.cli.common import emit_json, tracking_option


@click.group("import")
def group() -> None:
    """Copy runs, models and stages from another system's store."""


@group.command("mlflow")
@click.argument("source")
@click.option(
    "--artifacts-from",
    default=None,
    metavar="PATH|URI",
    help="Where the store's mlflow-artifacts: locations are "
    "(the MLflow server's --artifacts-destination).",
)
@click.option(
    "--experiment",
    "experiments",
    multiple=True,
    metavar="NAME",
    help="Import only this experiment (repeatable).",
)
@click.option("--dry-run", is_flag=True, help="Count what would be imported; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@tracking_option
def mlflow_command(
    source: str,
    artifacts_from: str | None,
    experiments: tuple[str, ...],
    dry_run: bool,
    as_json: bool,
    tracking_uri: str | None,
) -> None:
    """Copy the MLflow store SOURCE: experiments, runs, artifacts, models, stages, aliases.

    SOURCE is any tracking URI MLflow accepts (sqlite:///mlflow.db, ./mlruns,
    http://host:5000, postgresql://...). Ids are kept, so runs:/ and models:/
    URIs keep resolving; importing again adds only what is new.
    """
    from gitml.mlflow.importer import check_source, import_mlflow
    from gitml.tracking.client import Client

    uri = check_source(source)  # before the repository is opened: a bad source writes nothing
    client = Client(tracking_uri)
    bar: Any = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = click.progressbar(length=total, label="runs", file=sys.stderr)
            bar.__enter__()
        bar.update(1)

    show = progress if sys.stderr.isatty() else None
    try:
        summary = import_mlflow(
            uri,
            client,
            artifacts_from=artifacts_from,
            experiments=experiments,
            dry_run=dry_run,
            progress=show,
        )
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    for problem in summary.problems:
        click.echo(f"warning: {problem}", err=True)
    plain = summary.to_plain()
    if as_json:
        emit_json(plain)
        return
    verb = "would import" if dry_run else "imported"
    for name in ("experiments", "runs", "metrics", "artifacts", "models", "versions", "stages"):
        counts = plain[name]
        what = "metric points" if name == "metrics" else name
        click.echo(
            f"{what}: {verb} {counts['imported']}, updated {counts['updated']}, "
            f"unchanged {counts['skipped']}"
        )
