"""``gitml runs``: search, show, compare, tag, restore code, recover journals, delete."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gitml.cli.common import (
    emit_csv,
    emit_json,
    one_format,
    open_run,
    table,
    tracking_option,
    utc_time,
    utc_time_ms,
    warn_malformed,
)

if TYPE_CHECKING:
    from gitml.errors import InvalidRecord
    from gitml.format.records import Run
    from gitml.git.store import FileChange
    from gitml.tracking.client import Client
    from gitml.tracking.reports import RunComparison, RunDetails

DEFAULT_MAX = 1000  # MLflow's default for search_runs
PAGE = 50_000  # the most one search_runs call returns


def _client(tracking_uri: str | None) -> Client:
    from gitml.tracking.client import Client

    return Client(tracking_uri)


@click.group("runs")
def group() -> None:
    """Find, inspect, compare and manage runs."""


# -- search and list ------------------------------------------------------------------


def _search_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--experiment",
            "-e",
            "experiments",
            multiple=True,
            help="Only runs of this experiment (name or id); repeat for several.",
        ),
        click.option(
            "--order-by",
            "order_by",
            multiple=True,
            help="Sort key, e.g. 'metrics.rmse ASC'; repeat for ties. Default: newest first.",
        ),
        click.option(
            "--max",
            "max_results",
            type=click.IntRange(min=0),
            default=DEFAULT_MAX,
            show_default=True,
            help="At most this many runs; 0 for all of them.",
        ),
        click.option(
            "--columns",
            default=None,
            help="Columns after the run id, comma-separated: attributes (run_name, status, "
            "experiment, start_time, end_time, user, ...), metrics.KEY, params.KEY, tags.KEY.",
        ),
        click.option("--all", "show_all", is_flag=True, help="Active and deleted runs."),
        click.option("--deleted", "only_deleted", is_flag=True, help="Only deleted runs."),
        click.option(
            "--json", "as_json", is_flag=True, help="Full records as JSON (or the --columns)."
        ),
        click.option("--csv", "as_csv", is_flag=True, help="CSV, with every column by default."),
        tracking_option,
    ]
    for option in reversed(options):
        func = option(func)
    return func


@group.command("search")
@click.argument("filter_string", metavar="[FILTER]", default="")
@_search_options
def search(filter_string: str, **options: Any) -> None:
    """Runs matching FILTER, in MLflow's search syntax (plus OR and parentheses).

    \b
    Examples:
      gitml runs search "metrics.rmse < 0.8 and params.model = 'tree'"
      gitml runs search "tags.team = 'growth' OR status = 'FAILED'" --order-by metrics.rmse
      gitml runs search "params.alpha = '0.1' OR params.alpha = '0.5'" --columns params.alpha --csv
    """
    _search(filter_string, **options)


@group.command("list")
@_search_options
def list_runs(**options: Any) -> None:
    """List runs, newest first (``gitml runs search`` without a filter).

    Malformed records are reported as warnings, not fatal.
    """
    _search("", **options)


def _search(
    filter_string: str,
    *,
    experiments: tuple[str, ...],
    order_by: tuple[str, ...],
    max_results: int,
    columns: str | None,
    show_all: bool,
    only_deleted: bool,
    as_json: bool,
    as_csv: bool,
    tracking_uri: str | None,
) -> None:
    from gitml.query.columns import Column, export_columns, parse_columns, table_columns

    one_format(as_json, as_csv)
    if show_all and only_deleted:
        raise click.UsageError("--all and --deleted cannot be combined")
    view = "ALL" if show_all else "DELETED_ONLY" if only_deleted else "ACTIVE_ONLY"
    chosen = parse_columns(columns) if columns is not None else None
    client = _client(tracking_uri)
    runs, more = _collect(
        client, list(experiments) or None, filter_string, view, max_results, list(order_by)
    )
    warn_malformed(client.broken_records())
    if more:
        click.echo(
            f"note: more runs match; showing the first {max_results} (--max N, or --max 0 for all)",
            err=True,
        )
    if as_json and chosen is None:
        emit_json([run.to_plain() for run in runs])
        return
    problems: list[InvalidRecord] = []
    names = {e.id: e.name for e in client.list_experiments(problems)}
    warn_malformed(problems)
    if chosen is not None and Column("attribute", "run_id") not in chosen:
        chosen.insert(0, Column("attribute", "run_id"))
    if as_json and chosen is not None:
        emit_json([{c.name: c.value(run, names) for c in chosen} for run in runs])
        return
    if as_csv:
        cols = chosen if chosen is not None else export_columns(runs)
        emit_csv([c.name for c in cols], [[c.csv(run, names) for c in cols] for run in runs])
        return
    if not runs:
        click.echo("No runs match.", err=True)
        return
    cols = chosen if chosen is not None else table_columns(runs, [filter_string, *order_by])
    table([c.title for c in cols], [[c.cell(run, names) for c in cols] for run in runs])


def _collect(
    client: Client,
    experiment_ids: list[str] | None,
    filter_string: str,
    view: str,
    max_results: int,
    order_by: list[str],
) -> tuple[list[Run], bool]:
    """Up to ``max_results`` runs (0: all), page by page; and whether more match."""
    runs: list[Run] = []
    token: str | None = None
    while True:
        want = PAGE if max_results == 0 else min(PAGE, max_results - len(runs))
        page = client.search_runs(
            experiment_ids, filter_string, view, want, order_by or None, token
        )
        runs.extend(page)
        token = page.token
        if token is None or (max_results and len(runs) >= max_results):
            return runs, token is not None


# -- one run -----------------------------------------------------------------------------


@group.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@tracking_option
def show(run_id: str, as_json: bool, tracking_uri: str | None) -> None:
    """Show one run: params, metrics, tags, artifacts, code, parent and children.

    A unique prefix of the id is enough.
    """
    from gitml.tracking.reports import run_details

    client, full = open_run(tracking_uri, run_id)
    details = run_details(client, full)
    if as_json:
        emit_json(details.to_plain())
    else:
        _print_details(details)


def _print_details(details: RunDetails) -> None:
    run = details.run
    exp = details.experiment
    about = [
        ("run", run.id),
        ("name", run.name),
        ("experiment", f"{exp.name} ({exp.id})" if exp is not None else run.experiment_id),
        ("status", run.status + ("  (deleted)" if run.lifecycle_stage == "deleted" else "")),
        ("user", run.user),
        ("start", utc_time(run.start_time) + " UTC"),
    ]
    if run.end_time is not None:
        took = _duration(run.end_time - run.start_time)
        about.append(("end", f"{utc_time(run.end_time)} UTC  ({took})"))
    source = run.source
    if source.commit is not None:
        branch = f" on {source.branch}" if source.branch else ""
        about.append(("commit", f"{source.commit}{branch}"))
    if source.snapshot is not None:
        about.append(("snapshot", f"{source.snapshot}  (the work tree had changes)"))
    elif source.commit is None:
        about.append(("commit", "none (not started in a Git repository)"))
    if source.entry_point:
        about.append(("entry point", source.entry_point))
    if source.omitted:
        about.append(("not reproducible", _omitted(source.omitted)))
    if run.parent_run_id is not None:
        parent = details.parent
        about.append(
            ("parent", f"{run.parent_run_id}  {parent.name}" if parent else run.parent_run_id)
        )
    _pairs(about, indent="")

    click.echo("\nParams" + ("" if run.params else ": none"))
    _pairs(list(run.params.items()))
    click.echo("\nMetrics (latest)" + ("" if run.metrics else ": none"))
    _pairs([(k, f"{m.value:.6g}  (step {m.step})") for k, m in run.metrics.items()])
    from gitml.models.mlmodel import HISTORY_TAG, logged_models

    models = logged_models(run.tags)
    tags = [(k, v) for k, v in run.tags.items() if models is None or k != HISTORY_TAG]
    click.echo("\nTags" + ("" if tags else ": none"))
    _pairs(tags)
    if models:
        click.echo(f"\nLogged models ({HISTORY_TAG})")
        _pairs([(m.artifact_path, f"{', '.join(m.flavors)}  {m.time}".strip()) for m in models])
    click.echo("\nArtifacts" + ("" if details.artifacts else ": none"))
    _pairs([(a.path, _bytes(a.size)) for a in details.artifacts])
    if details.children:
        click.echo(f"\nChild runs ({len(details.children)})")
        rows = []
        for child in details.children:
            deleted = "  (deleted)" if child.lifecycle_stage == "deleted" else ""
            rows.append((child.id, f"{child.name}  {child.status}{deleted}"))
        _pairs(rows)


@group.command("diff")
@click.argument("run_a")
@click.argument("run_b")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@tracking_option
def diff(run_a: str, run_b: str, as_json: bool, tracking_uri: str | None) -> None:
    """Compare two runs: params, latest metrics, tags and code (as git diff --stat)."""
    from gitml.tracking.reports import compare_runs

    client, full_a = open_run(tracking_uri, run_a)
    full_b = client.resolve_run_id(run_b)
    comparison = compare_runs(client, full_a, full_b)
    if as_json:
        emit_json(comparison.to_plain())
    else:
        _print_comparison(comparison)


def _print_comparison(cmp: RunComparison) -> None:
    for label, run in (("a", cmp.a), ("b", cmp.b)):
        click.echo(f"{label}  {run.id}  {run.name}  {run.status}")

    what = f"{len(cmp.params)} differ, {cmp.same_params} the same"
    click.echo(f"\nParams ({what})")
    _pairs([(c.key, _change(c.a, c.b, c.status)) for c in cmp.params])

    click.echo("\nMetrics (latest)" + ("" if cmp.metrics else ": none"))
    rows = []
    for c in cmp.metrics:
        if c.status in ("added", "removed"):
            rows.append((c.key, _change(c.a, c.b, c.status)))
            continue
        text = f"{c.a:.6g} -> {c.b:.6g}"
        if c.delta is not None and c.status == "changed":
            text += f"  ({c.delta:+.6g}" + (f", {c.delta / c.a:+.1%})" if c.a else ")")
        rows.append((c.key, text))
    _pairs(rows)

    if cmp.tags:
        click.echo(f"\nTags ({len(cmp.tags)} differ)")
        _pairs([(c.key, _change(c.a, c.b, c.status)) for c in cmp.tags])

    code = cmp.code
    marks = ["  (dirty work tree)" if r.source.snapshot else "" for r in (cmp.a, cmp.b)]
    click.echo(f"\nCode  {_short(code.a)}{marks[0]} -> {_short(code.b)}{marks[1]}")
    if code.files is None:
        click.echo(f"  {code.reason}")
    elif not code.files:
        click.echo("  the same")
    else:
        _print_stat(code.files)


def _print_stat(files: Sequence[FileChange]) -> None:
    """Like ``git diff --stat``: path | count +++---, then the totals."""
    names = [f"{f.old_path} => {f.path}" if f.old_path else f.path for f in files]
    width = max(len(n) for n in names)
    widest = max(f.added + f.removed for f in files)
    digits = len(str(widest))
    scale = min(1.0, 40 / widest) if widest else 1.0  # git's bars fit the terminal too
    for f, name in zip(files, names, strict=True):
        if f.binary:
            click.echo(f" {name.ljust(width)} | Bin {f.old_size or 0} -> {f.new_size or 0} bytes")
            continue
        bars = "+" * _bar(f.added, scale) + "-" * _bar(f.removed, scale)
        changed = str(f.added + f.removed).rjust(digits)
        click.echo(f" {name.ljust(width)} | {changed} {bars}".rstrip())
    added = sum(f.added for f in files)
    removed = sum(f.removed for f in files)
    summary = f" {len(files)} file{'s' if len(files) != 1 else ''} changed"
    if added:
        summary += f", {added} insertion{'s' if added != 1 else ''}(+)"
    if removed:
        summary += f", {removed} deletion{'s' if removed != 1 else ''}(-)"
    click.echo(summary)


@group.command("metric")
@click.argument("run_id")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV: step,timestamp,value.")
@tracking_option
def metric(run_id: str, key: str, as_json: bool, as_csv: bool, tracking_uri: str | None) -> None:
    """Print every point of one metric: step, time (UTC, to the millisecond), value
    (tab-separated); --json and --csv give the timestamp in milliseconds."""
    one_format(as_json, as_csv)
    client, full = open_run(tracking_uri, run_id)
    points = client.get_metric_history(full, key)
    if as_json:
        emit_json([{"step": p.step, "timestamp": p.timestamp, "value": p.value} for p in points])
        return
    if as_csv:
        emit_csv(
            ["step", "timestamp", "value"],
            [[str(p.step), str(p.timestamp), repr(p.value)] for p in points],
        )
        return
    for p in points:
        click.echo(f"{p.step}\t{utc_time_ms(p.timestamp)}\t{p.value!r}")


@group.command("tag")
@click.argument("run_id")
@click.argument("key")
@click.argument("value", required=False)
@click.option("--delete", is_flag=True, help="Remove the tag instead (an error if it is not set).")
@tracking_option
def tag(run_id: str, key: str, value: str | None, delete: bool, tracking_uri: str | None) -> None:
    """Set tag KEY to VALUE on a run, or remove it with --delete."""
    if delete == (value is not None):
        raise click.UsageError("give a VALUE to set, or --delete to remove the tag (not both)")
    client, full = open_run(tracking_uri, run_id)
    if delete:
        client.delete_tag(full, key)
        click.echo(f"Deleted tag '{key}' of run {full}")
    else:
        client.set_tag(full, key, value)
        client.flush()
        click.echo(f"Set tag '{key}' of run {full}")


# -- code, journals and lifecycle ---------------------------------------------------------


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
    omitted = client.get_run(full).source.omitted
    if omitted:
        click.echo(f"warning: not reproducible: {_omitted(omitted)}", err=True)


def _omitted(paths: list[str]) -> str:
    """What a run's snapshot lacks, in one line."""
    shown = ", ".join(paths[:5]) + (", …" if len(paths) > 5 else "")
    return f"untracked files too large for the snapshot were left out ({shown})"


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
    """Mark a run deleted (hidden unless --all or --deleted; its history stays in Git)."""
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


# -- formatting ---------------------------------------------------------------------------


def _pairs(rows: Sequence[tuple[str, str]], indent: str = "  ") -> None:
    width = max((len(k) for k, _ in rows), default=0)
    for key, value in rows:
        click.echo(f"{indent}{key.ljust(width)}  {value}".rstrip())


def _change(a: Any, b: Any, status: str) -> str:
    if status == "added":
        return f"(none) -> {_value(b)}"
    if status == "removed":
        return f"{_value(a)} -> (none)"
    return f"{_value(a)} -> {_value(b)}"


def _value(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "(none)"


def _bar(count: int, scale: float) -> int:
    return 0 if count == 0 else max(1, round(count * scale))


def _bytes(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def _duration(ms: int) -> str:
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    return " ".join(f"{n}{u}" for n, u in parts if n) or "0s"
