"""``gitml experiments``: list and create experiments."""

from __future__ import annotations

import click

from gitml.cli.common import emit_json, table, tracking_option, warn_malformed


@click.group("experiments")
def group() -> None:
    """List and create experiments."""


@group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@tracking_option
def list_experiments(as_json: bool, tracking_uri: str | None) -> None:
    """Every experiment with its number of runs (active, and deleted)."""
    from gitml.errors import InvalidRecord
    from gitml.tracking.client import Client

    client = Client(tracking_uri)
    problems: list[InvalidRecord] = []
    listed = client.list_experiments(problems)
    counts = client.run_counts()
    warn_malformed(problems)
    none = {"active": 0, "deleted": 0}
    if as_json:
        emit_json([{**e.to_plain(), "runs": counts.get(e.id, none)} for e in listed])
        return
    table(
        ["ID", "NAME", "STAGE", "RUNS", "DELETED"],
        [
            [
                e.id,
                e.name,
                e.lifecycle_stage,
                str(counts.get(e.id, none)["active"]),
                str(counts.get(e.id, none)["deleted"]),
            ]
            for e in listed
        ],
    )


@group.command("create")
@click.argument("name")
@tracking_option
def create(name: str, tracking_uri: str | None) -> None:
    """Create an experiment; runs name it with --experiment or set_experiment()."""
    from gitml.tracking.client import Client

    exp_id = Client(tracking_uri).create_experiment(name)
    click.echo(f"Created experiment '{name}' with id {exp_id}")
