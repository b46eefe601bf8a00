"""``gitml index``: the query index under ``.git/gitml/``: rebuild it, compact it, see its state."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from gitml.cli.common import emit_json, tracking_option, utc_time, warn_malformed


@click.group("index")
def group() -> None:
    """The query index behind search (derived from the refs; safe to delete)."""


@group.command("rebuild")
@tracking_option
def rebuild(tracking_uri: str | None) -> None:
    """Index every run again from the refs (a progress bar on a terminal)."""
    from gitml.tracking.client import Client

    client = Client(tracking_uri)
    bar: Any = None
    shown = 0

    def progress(done: int, total: int) -> None:
        nonlocal bar, shown
        if bar is None:
            bar = click.progressbar(length=total, label="Indexing runs", file=sys.stderr)
            bar.__enter__()
        bar.update(done - shown)
        shown = done

    started = time.perf_counter()
    try:
        count = client.index.rebuild(progress if _interactive() else None)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    took = time.perf_counter() - started
    broken = client.index.broken()
    warn_malformed(broken)
    skipped = f" ({len(broken)} malformed records skipped)" if broken else ""
    click.echo(f"Indexed {count} runs{skipped} in {took:.1f}s")


@group.command("compact")
@tracking_option
def compact(tracking_uri: str | None) -> None:
    """Write the index anew without its unused space (SQLite's VACUUM), as git gc packs.

    Run it after ``git gc``, or when ``gitml index status`` shows the index
    grown past what its runs need; a search waits for it.
    """
    from gitml.tracking.client import Client

    before, after = Client(tracking_uri).index.compact()
    click.echo(f"Compacted the index: {before:,} -> {after:,} bytes")


def _interactive() -> bool:
    """Whether a person watches stderr (a progress bar helps) rather than a pipe or log."""
    return sys.stderr.isatty()


@group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@tracking_option
def status(as_json: bool, tracking_uri: str | None) -> None:
    """Where the index is, how many runs it holds, malformed records, last refresh.

    Shows the index as it is; any search (or ``gitml index rebuild``) brings it
    up to date with the refs first.
    """
    from gitml.tracking.client import Client

    state = Client(tracking_uri).index.status()
    if as_json:
        emit_json(state)
        return
    refreshed = state.get("refreshed_at")
    rows = [
        ("path", str(state["path"])),
        ("runs", str(state["runs"])),
        ("malformed", str(len(state["broken"]))),
        ("size", f"{state['size_bytes']} bytes"),
        ("refreshed", utc_time(int(refreshed * 1000)) + " UTC" if refreshed else "never"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key.ljust(width)}  {value}")
    for error in state["broken"]:
        click.echo(f"  {error}")
