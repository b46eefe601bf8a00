"""``gitml validate``: check record files (pre-commit) and refs against the schemas."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .common import tracking_option


@click.command("validate")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option("--refs", "check_refs", is_flag=True, help="Also check every record on refs/gitml/*.")
@tracking_option
def command(files: tuple[Path, ...], check_refs: bool, tracking_uri: str | None) -> None:
    """Validate FILES (run.yaml, experiment.yaml, artifacts.yaml, .gitml.yaml) and refs.

    Prints one line per problem (file, field, reason) and exits 1 if any.
    """
    from ..validate import validate_files, validate_refs

    problems = validate_files(files)
    if check_refs:
        from ..tracking.client import resolve_store

        store, _ = resolve_store(tracking_uri)
        problems.extend(validate_refs(store))
    for problem in problems:
        click.echo(str(problem), err=True)
    if problems:
        sys.exit(1)
