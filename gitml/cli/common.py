"""What the command modules share: output for ``--json`` and terminals, the
tracking option, and opening a run named by a unique prefix of its id."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ..tracking.client import Client


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def tracking_option(func: Any) -> Any:
    return click.option(
        "--tracking-uri",
        envvar="GITML_TRACKING_URI",
        default=None,
        help="Repository holding the runs (default: the one you stand in).",
    )(func)


def open_run(tracking_uri: str | None, run_id: str) -> tuple[Client, str]:
    """A client on the tracking repository and the full id a prefix names."""
    from ..tracking.client import Client

    client = Client(tracking_uri)
    return client, client.resolve_run_id(run_id)
