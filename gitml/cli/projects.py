"""``gitml run`` (an MLproject as a run) and ``gitml runs reproduce``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from gitml.cli.common import emit_json, tracking_option

if TYPE_CHECKING:
    from gitml.projects import Plan, ProjectRun

_MANAGERS = click.Choice(["local", "virtualenv", "uv", "conda", "docker"])


def _params(pairs: tuple[str, ...]) -> dict[str, str]:
    from gitml.projects.params import parse_assignments

    return parse_assignments(pairs)


@click.command("run")
@click.argument("uri", default=".")
@click.option("--entry-point", "-e", default="main", show_default=True, help="Entry point to run.")
@click.option(
    "--param", "-P", "param_pairs", multiple=True, metavar="KEY=VALUE", help="A parameter; repeat."
)
@click.option(
    "--env-manager",
    type=_MANAGERS,
    default=None,
    help="Where the command runs (default: virtualenv for python_env, conda for conda_env, "
    "docker for docker_env, local otherwise).",
)
@click.option("--experiment", default=None, help="Experiment name (created if needed).")
@click.option("--run-name", default=None, help="Name of the new run.")
@click.option("--version", "git_version", default=None, help="Git branch, tag or commit.")
@click.option("--dry-run", is_flag=True, help="Print what would run; run and record nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: machine-readable output.")
@tracking_option
def run_command(
    uri: str,
    entry_point: str,
    param_pairs: tuple[str, ...],
    env_manager: str | None,
    experiment: str | None,
    run_name: str | None,
    git_version: str | None,
    dry_run: bool,
    as_json: bool,
    tracking_uri: str | None,
) -> None:
    """Run an MLproject (a folder, or a Git URL with #subdirectory) as a new run.

    \b
    gitml run examples/project -P alpha=0.5
    gitml run https://github.com/org/repo.git#projects/train --version v1.2 -e main
    """
    from gitml import projects

    parameters = _params(param_pairs)
    if dry_run:
        plan = projects.plan(
            uri, entry_point, parameters, env_manager=env_manager, version=git_version
        )
        try:
            _print_plan(plan, as_json)
        finally:
            plan.fetched.cleanup()
        return
    if as_json:
        raise click.UsageError("--json goes with --dry-run")
    done = projects.run(
        uri,
        entry_point,
        parameters,
        env_manager=env_manager,
        experiment=experiment,
        run_name=run_name,
        version=git_version,
        tracking_uri=tracking_uri,
    )
    _finish(done)


def _print_plan(plan: Plan, as_json: bool) -> None:
    import shlex

    described = plan.describe()
    if as_json:
        emit_json(described)
        return
    rows: list[tuple[str, Any]] = [
        ("project", described["project"]),
        ("directory", described["directory"]),
        ("source", described["source"]),
        ("commit", described["commit"]),
        ("entry point", described["entry_point"]),
        ("environment", described["environment"]),
    ]
    for label, value in rows:
        if value is not None:
            click.echo(f"{label + ':':<13}{value}")
    if described["parameters"]:
        click.echo("parameters:")
        for key, value in described["parameters"].items():
            click.echo(f"  {key} = {value}")
    click.echo(f"{'command:':<13}{described['command']}")
    click.echo(f"{'runs as:':<13}{shlex.join(described['argv'])}")
    click.echo("(dry run: nothing ran, no run was created)")


def _finish(done: ProjectRun) -> None:
    if done.omitted:
        shown = ", ".join(done.omitted[:5]) + (", …" if len(done.omitted) > 5 else "")
        click.echo(
            f"note: untracked files too large for the snapshot of the code were left out "
            f"({shown}), so 'gitml runs reproduce' will not have them",
            err=True,
        )
    click.echo(f"run {done.run_id} {done.status} (exit {done.exit_code})", err=True)
    if done.exit_code != 0:
        sys.exit(min(done.exit_code, 255))


@click.command("reproduce")
@click.argument("run_id")
@click.option(
    "--param", "-P", "param_pairs", multiple=True, metavar="KEY=VALUE", help="Override a parameter."
)
@click.option("--env-manager", type=_MANAGERS, default=None, help="Default: the original run's.")
@click.option("--run-name", default=None, help="Name of the new run.")
@tracking_option
def reproduce_command(
    run_id: str,
    param_pairs: tuple[str, ...],
    env_manager: str | None,
    run_name: str | None,
    tracking_uri: str | None,
) -> None:
    """Run a project run again: its exact code (dirty snapshot included), entry point and
    parameters, as a new run tagged gitml.reproduces."""
    from gitml import projects

    done = projects.reproduce(
        run_id,
        _params(param_pairs),
        env_manager=env_manager,
        run_name=run_name,
        tracking_uri=tracking_uri,
    )
    _finish(done)


def attach(runs_group: click.Group) -> None:
    """``gitml runs reproduce`` lives with the other ``runs`` commands."""
    runs_group.add_command(reproduce_command)
