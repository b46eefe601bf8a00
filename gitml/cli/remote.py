"""``gitml remote setup``, ``gitml push`` and ``gitml pull``: share records through a Git remote."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from gitml.cli.common import emit_json, tracking_option

if TYPE_CHECKING:
    from gitml.git.store import Store


def _stores(tracking_uri: str | None) -> tuple[Store, Store | None]:
    from gitml.tracking.uri import resolve_store

    return resolve_store(tracking_uri)


@click.group("remote")
def group() -> None:
    """Connect a Git remote to gitml's refs."""


@group.command("setup")
@click.argument("remote", default="origin")
@tracking_option
def setup(remote: str, tracking_uri: str | None) -> None:
    """Add the refspecs that make plain 'git fetch' and 'git push' move gitml's refs."""
    from gitml.sharing.remote import setup_remote

    store, _ = _stores(tracking_uri)
    added = setup_remote(store, remote)
    for line in added:
        click.echo(f"added {line}")
    if not added:
        click.echo(f"remote '{remote}' already has gitml's refspecs")


@click.command("push")
@click.argument("remote", default="origin")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@tracking_option
def push_command(remote: str, as_json: bool, tracking_uri: str | None) -> None:
    """Publish runs, experiments, models and stage branches to REMOTE (atomic, never forced)."""
    from gitml.sharing.remote import push

    store, work = _stores(tracking_uri)
    report = push(store, remote, settings_root=work.root if work is not None else None)
    if as_json:
        emit_json(
            {
                "remote": remote,
                "pushed": report.pushed,
                "renumbered": [vars(r) for r in report.renumbered],
                "notes": report.notes,
                "problems": report.problems,
            }
        )
    else:
        for entry in report.renumbered:
            click.echo(str(entry))
        for note in report.notes:
            click.echo(note)
        if report.problems:
            click.echo(f"push to {remote} refused; nothing was pushed:", err=True)
            for problem in report.problems:
                click.echo(f"  {problem}", err=True)
        elif report.pushed:
            click.echo(f"pushed {len(report.pushed)} ref(s) to {remote}")
        else:
            click.echo(f"{remote} is up to date")
    if report.problems:
        sys.exit(1)


@click.command("pull")
@click.argument("remote", default="origin")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@tracking_option
def pull_command(remote: str, as_json: bool, tracking_uri: str | None) -> None:
    """Fetch REMOTE's runs, experiments, models and stages; validate; fast-forward local refs."""
    from gitml.sharing.remote import pull

    store, work = _stores(tracking_uri)
    report = pull(store, remote, settings_root=work.root if work is not None else None)
    if as_json:
        emit_json(
            {
                "remote": remote,
                "updated": report.updated,
                "notes": report.notes,
                "problems": report.problems,
            }
        )
    else:
        for note in report.notes:
            click.echo(note)
        for problem in report.problems:
            click.echo(f"error: {problem}", err=True)
        click.echo(f"updated {len(report.updated)} ref(s) from {remote}")
    if report.problems:
        sys.exit(1)
