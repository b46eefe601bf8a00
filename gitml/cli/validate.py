"""``gitml validate``: check record files (pre-commit), refs and commits against the
schemas, each other and the promotion policy."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gitml.cli.common import tracking_option


@click.command("validate")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--ref",
    "refs",
    multiple=True,
    metavar="REF",
    help="Check one ref or commit: gitml/<stage>, a proposal branch, "
    "refs/gitml/models/<name>, a run ref, a sha. Repeatable.",
)
@click.option(
    "--all", "--refs", "check_all", is_flag=True, help="Check every gitml ref and stage branch."
)
@tracking_option
def command(
    files: tuple[Path, ...], refs: tuple[str, ...], check_all: bool, tracking_uri: str | None
) -> None:
    """Validate FILES (records by name or place: run.yaml, model.yaml, versions/<n>.yaml,
    models/<name>.yaml, MLmodel, .gitml.yaml, ...) and refs.

    A stage file is also checked against the repository it lies in: weights,
    the versions it declares (they exist, and their digests match) and the
    promotion policy in .gitml.yaml. Prints one line per problem (ref or file,
    field, reason) and exits 1 if any. Nothing is written.
    """
    from gitml.registry.validate import load_config, validate_files, validate_ref, validate_refs

    problems = validate_files(files)
    if refs or check_all:
        from gitml.tracking.uri import resolve_store

        store, work = resolve_store(tracking_uri)
        # The settings of the project you stand in, as the tracking client reads them.
        config = load_config(work if work is not None else store)
        for ref in refs:
            problems.extend(validate_ref(store, ref, config))
        if check_all:
            problems.extend(validate_refs(store, config))
    for problem in problems:
        click.echo(str(problem), err=True)
    if problems:
        sys.exit(1)
