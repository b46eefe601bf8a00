"""``gitml experiments``: list, create, rename, delete and restore experiments."""

from __future__ import annotations

import click

from gitml.cli.common import emit_json, table, tracking_option, warn_malformed


@click.group("experiments")
def group() -> None:
    """List, create, rename, delete and restore experiments."""


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


@group.command("rename")
@click.argument("experiment")
@click.argument("new_name")
@tracking_option
def rename(experiment: str, new_name: str, tracking_uri: str | None) -> None:
    """Give EXPERIMENT (an id or a name) another name; its id and runs stay."""
    from gitml.tracking.client import Client

    client = Client(tracking_uri)
    exp_id = client.find_experiment_id(experiment)
    client.rename_experiment(exp_id, new_name)
    click.echo(f"Renamed experiment {exp_id} to '{new_name}'")


@group.command("delete")
@click.argument("experiment")
@tracking_option
def delete(experiment: str, tracking_uri: str | None) -> None:
    """Mark EXPERIMENT (an id or a name) and its runs deleted; 'restore' undoes it."""
    _set_lifecycle(experiment, tracking_uri, restore=False)


@group.command("restore")
@click.argument("experiment")
@tracking_option
def restore(experiment: str, tracking_uri: str | None) -> None:
    """Make a deleted EXPERIMENT (an id or a name) active again, with its deleted runs."""
    _set_lifecycle(experiment, tracking_uri, restore=True)


def _set_lifecycle(experiment: str, tracking_uri: str | None, *, restore: bool) -> None:
    from gitml.tracking.client import Client

    client = Client(tracking_uri)
    exp_id = client.find_experiment_id(experiment)
    if restore:
        client.restore_experiment(exp_id)
    else:
        client.delete_experiment(exp_id)
    click.echo(f"{'Restored' if restore else 'Deleted'} experiment {exp_id} and its runs")
