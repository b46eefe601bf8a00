"""``gitml hook``: the server-side ``pre-receive`` check and its installer."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click


@click.group("hook")
def group() -> None:
    """Git hooks that enforce schemas, references and the promotion policy."""


@group.command("pre-receive")
def pre_receive() -> None:
    """Judge a push: read git's '<old> <new> <ref>' lines on stdin, exit 1 to reject.

    Run by git from hooks/pre-receive (see 'gitml hook install --server');
    problems go to stderr, which git shows the pusher as 'remote: ...'.
    """
    from gitml.registry.hooks import run_pre_receive

    lines = run_pre_receive(sys.stdin.read(), os.environ)
    for line in lines:
        click.echo(line, err=True)
    if lines:
        sys.exit(1)


@group.command("install")
@click.option(
    "--server", is_flag=True, required=True, help="Install pre-receive (the only kind so far)."
)
@click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="The repository that receives pushes (usually bare).",
)
@click.option("--force", is_flag=True, help="Replace a pre-receive hook that is not gitml's.")
def install(server: bool, repo: Path, force: bool) -> None:
    """Install the pre-receive hook into a repository that receives pushes."""
    from gitml.registry.hooks import install_server_hook

    if not server:
        raise click.UsageError("give --server: only the server-side hook exists")
    path = install_server_hook(repo, force=force)
    click.echo(f"Installed {path}: pushes to gitml/* and refs/gitml/* are now checked.")
