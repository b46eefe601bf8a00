"""``gitml artifacts``: list a run's artifacts and fetch one, digest checked."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gitml.cli.common import emit_json, open_run, table, tracking_option
from gitml.errors import InvalidInput, NotFound


@click.group("artifacts")
def group() -> None:
    """List and fetch run artifacts."""


@group.command("list")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@tracking_option
def list_artifacts(run_id: str, as_json: bool, tracking_uri: str | None) -> None:
    """Every artifact of a run: path, size, sha256, where it is stored."""
    client, full = open_run(tracking_uri, run_id)
    listed = client.list_artifacts(full)
    if as_json:
        emit_json([a.to_plain() for a in listed])
        return
    table(
        ["PATH", "SIZE", "SHA256", "STORAGE"],
        [[a.path, str(a.size), a.sha256[:16], a.storage] for a in listed],
    )


@group.command("get")
@click.argument("run_id")
@click.argument("path", required=False, default="")
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path),
    default=None,
    help="File to write (default: the artifact's name); '-' for stdout. For a folder or "
    "every artifact: the folder to write below (default: the current one).",
)
@tracking_option
def get(run_id: str, path: str, out: Path | None, tracking_uri: str | None) -> None:
    """Write one artifact, a folder of them, or (without PATH) every artifact of a run,
    after checking each sha256."""
    from gitml.format.paths import clean_path

    client, full = open_run(tracking_uri, run_id)
    clean = clean_path(path) if path else ""
    listed = client.list_artifacts(full, clean or None)
    if not any(a.path == clean for a in listed):
        if clean and not listed:
            raise NotFound(f"run {full} has no artifact '{clean}'")
        if out is not None and str(out) == "-":
            raise InvalidInput(f"'{clean or 'every artifact'}' is a folder; --out - takes one file")
        written = client.download_artifacts(full, clean, out if out is not None else Path("."))
        click.echo(f"Wrote {len(listed)} files to {written}", err=True)
        return
    data = client.read_artifact(full, clean)
    if out is not None and str(out) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    target = out if out is not None else Path(Path(clean).name)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    click.echo(f"Wrote {len(data)} bytes to {target}", err=True)
