"""What the command modules share: output for ``--json`` and terminals, the
tracking option, and opening a run named by a unique prefix of its id."""

from __future__ import annotations

import csv
import datetime
import io
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from gitml.errors import InvalidRecord
    from gitml.tracking.client import Client


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def emit_csv(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(rows)
    click.echo(out.getvalue(), nl=False)


def warn_malformed(problems: Sequence[InvalidRecord | str]) -> None:
    """One warning on stderr for each record a listing skipped (it names ref, file and field)."""
    for problem in problems:
        click.echo(f"warning: skipped malformed record {problem}", err=True)


def one_format(as_json: bool, as_csv: bool) -> None:
    if as_json and as_csv:
        raise click.UsageError("--json and --csv cannot be combined")


def utc_time(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S"
    )


def utc_time_ms(ms: int) -> str:
    """``utc_time`` to the millisecond, with its zone: metric points come many a second."""
    return f"{utc_time(ms - ms % 1000)}.{ms % 1000:03d} UTC"


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
        help="Repository holding the runs, or a gitml server's http(s):// URL "
        "(default: the repository you stand in).",
    )(func)


def open_run(tracking_uri: str | None, run_id: str) -> tuple[Client, str]:
    """A client on the tracking repository (or server) and the full id a prefix names."""
    from gitml.tracking.client import Client

    client = Client(tracking_uri)
    return client, client.resolve_run_id(run_id)
