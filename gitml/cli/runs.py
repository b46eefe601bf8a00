"""``gitml runs``: list, show, restore code, recover journals, delete and restore."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from .common import emit_json, open_run, table, tracking_option

if TYPE_CHECKING:
    from ..tracking.client import Client


def _client(tracking_uri: str | None) -> Client:
    from ..tracking.client import Client

    return Client(tracking_uri)


@click.group("runs")
def group() -> None:
    """Inspect and manage runs."""


@group.command("list")
@click.option("--experiment", "-e", default=None, help="Only this experiment (name or id).")
@click.option("--all", "show_all", is_flag=True, help="Include deleted runs.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@tracking_option
def list_runs(
    experiment: str | None, show_all: bool, as_json: bool, tracking_uri: str | None
) -> None:
    """List runs, newest first. Malformed records are reported, not fatal."""
    client = _client(tracking_uri)
    ids = None
    if experiment is not None:
        found = client.get_experiment_by_name(experiment)
        ids = [found.id if found is not None else experiment]
    runs, broken = client.list_runs(ids, include_deleted=show_all)
    for error in broken:
        click.echo(f"warning: skipped malformed record {error}", err=True)
    if as_json:
        emit_json([run.to_plain() for run in runs])
        return
    experiment_names = {e.id: e.name for e in client.list_experiments()}
    table(
        ["RUN ID", "NAME", "STATUS", "EXPERIMENT", "START", "METRICS"],
        [
            [
                run.id[:12],
                run.name,
                run.status,
                experiment_names.get(run.experiment_id, run.experiment_id),
                _time(run.start_time),
                ", ".join(f"{k}={m.value:.4g}" for k, m in sorted(run.metrics.items())[:3]),
            ]
            for run in runs
        ],
    )


@group.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@tracking_option
def show(run_id: str, as_json: bool, tracking_uri: str | None) -> None:
    """Show one run (a unique prefix of its id is enough)."""
    client, full = open_run(tracking_uri, run_id)
    run = client.get_run(full)
    if as_json:
        emit_json(run.to_plain())
    else:
        click.echo(run.to_yaml().decode(), nl=False)


@group.command("metric")
@click.argument("run_id")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@tracking_option
def metric(run_id: str, key: str, as_json: bool, tracking_uri: str | None) -> None:
    """Print every point of one metric: step, timestamp, value."""
    client, full = open_run(tracking_uri, run_id)
    points = client.get_metric_history(full, key)
    if as_json:
        emit_json([{"step": p.step, "timestamp": p.timestamp, "value": p.value} for p in points])
        return
    for p in points:
        click.echo(f"{p.step}\t{p.timestamp}\t{p.value!r}")


@group.command("code")
@click.argument("run_id")
@click.option(
    "--into",
    "into",
    required=True,
    type=click.Path(path_type=Path),
    help="An empty or new folder to write the code into.",
)
@tracking_option
def code(run_id: str, into: Path, tracking_uri: str | None) -> None:
    """Restore the exact code a run used (its dirty snapshot when there was one)."""
    client, full = open_run(tracking_uri, run_id)
    count = client.restore_code(full, into)
    click.echo(f"Wrote {count} files to {into}")


@group.command("recover")
@tracking_option
def recover(tracking_uri: str | None) -> None:
    """Commit metric journals left behind by killed processes."""
    report = _client(tracking_uri).recovered
    for line in report:
        click.echo(line)
    if not report:
        click.echo("Nothing to recover.")


@group.command("delete")
@click.argument("run_id")
@tracking_option
def delete(run_id: str, tracking_uri: str | None) -> None:
    """Mark a run deleted (hidden from listings; its history stays in Git)."""
    client, full = open_run(tracking_uri, run_id)
    client.delete_run(full)
    click.echo(f"Deleted run {full}")


@group.command("restore")
@click.argument("run_id")
@tracking_option
def restore(run_id: str, tracking_uri: str | None) -> None:
    """Undo ``gitml runs delete``."""
    client, full = open_run(tracking_uri, run_id)
    client.restore_run(full)
    click.echo(f"Restored run {full}")


def _time(ms: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S"
    )
