"""The ``gitml`` command: dispatch only; each group lives in its own module.

Subcommand modules import the library inside their functions so that
``gitml --version`` and ``--help`` stay fast.
"""

from __future__ import annotations

import os
import sys
from typing import Any

# pydantic looks up plugins in every installed distribution's entry points on
# first use (16 ms of a 400 ms budget for `gitml runs search`); the command
# line has no use for them. A user who wants them can set the variable.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

import click

from .._version import __version__
from . import (
    artifacts,
    experiments,
    hook,
    index,
    init,
    lineage,
    models,
    projects,
    reconcile,
    registry,
    remote,
    runs,
    server,
    stage,
    ui,
    validate,
)


class _Group(click.Group):
    """Turns ``GitmlError`` into one line and exit 1; anything else is a bug (exit 3)."""

    def invoke(self, ctx: click.Context) -> Any:
        from ..errors import GitmlError

        try:
            return super().invoke(ctx)
        except GitmlError as exc:
            if ctx.obj and ctx.obj.get("traceback"):
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except BrokenPipeError:
            # The reader (``| head``) has all it wanted; say nothing more.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except Exception as exc:
            if ctx.obj and ctx.obj.get("traceback"):
                raise
            click.echo(
                f"internal error: {type(exc).__name__}: {exc}\n"
                "This is a bug in gitml; run again with --traceback and report what it prints.",
                err=True,
            )
            sys.exit(3)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="gitml")
@click.option("--traceback", is_flag=True, help="Show the full stack on errors.")
@click.pass_context
def main(ctx: click.Context, traceback: bool) -> None:
    """The machine-learning lifecycle with Git as the database."""
    ctx.obj = {"traceback": traceback}


main.add_command(init.command)
main.add_command(runs.group)
main.add_command(artifacts.group)
main.add_command(experiments.group)
main.add_command(index.group)
main.add_command(models.group)
main.add_command(validate.command)
main.add_command(lineage.command)
main.add_command(hook.group)
main.add_command(remote.group)
main.add_command(remote.push_command)
main.add_command(remote.pull_command)
registry.attach(models.group)
main.add_command(stage.group)
main.add_command(reconcile.command)
main.add_command(server.command)
main.add_command(ui.command)
main.add_command(projects.run_command)
projects.attach(runs.group)
