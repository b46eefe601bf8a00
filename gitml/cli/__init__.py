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

import importlib

import click

from gitml._version import __version__

# name -> (module under gitml.cli, attribute): a command's module is imported
# only when that command runs (or --help lists it). Importing all of them
# cost 30-60 ms of every start (logging, subprocess, hashlib...), against
# budgets of 200-300 ms for a whole `gitml stage show` or `models register`.
COMMANDS = {
    "artifacts": ("artifacts", "group"),
    "experiments": ("experiments", "group"),
    "hook": ("hook", "group"),
    "import": ("importer", "group"),
    "index": ("index", "group"),
    "init": ("init", "command"),
    "lineage": ("lineage", "command"),
    "models": ("models", "group"),
    "pull": ("remote", "pull_command"),
    "push": ("remote", "push_command"),
    "reconcile": ("reconcile", "command"),
    "remote": ("remote", "group"),
    "run": ("projects", "run_command"),
    "runs": ("runs", "group"),
    "server": ("server", "command"),
    "stage": ("stage", "group"),
    "ui": ("ui", "command"),
    "validate": ("validate", "command"),
}
# Groups whose commands live in more than one module: name -> modules whose
# ``attach(group)`` adds theirs.
EXTENSIONS = {"models": ("registry",), "runs": ("projects",)}


def load_command(name: str) -> click.Command | None:
    """The command ``name`` with everything attached to it, importing its modules now."""
    where = COMMANDS.get(name)
    if where is None:
        return None
    module, attribute = where
    command: click.Command = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    if isinstance(command, click.Group):
        for extension in EXTENSIONS.get(name, ()):
            importlib.import_module(f"{__name__}.{extension}").attach(command)
    return command


class _Group(click.Group):
    """Loads commands on first use; turns ``GitmlError`` into one line and exit 1.

    Anything else escaping is a bug (exit 3).
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return load_command(cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        from gitml.errors import GitmlError

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
