"""``gitml stage``: assign versions to stages, propose them for review, audit and roll back.

A stage is the branch ``gitml/<stage>``; ``assign`` commits on it directly,
``assign --propose`` makes a branch ``gitml/proposals/<stage>/<model>-v<n>``
for a pull request instead. ``show --at`` answers "what was in production
then" from the branch's first-parent history.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import click

from gitml.cli.common import emit_json, table, tracking_option, utc_time
from gitml.cli.registry import declaration_json
from gitml.format import layout
from gitml.registry.declarations import describe_declaration, served_summary

if TYPE_CHECKING:
    from gitml.registry.declarations import StageTip
    from gitml.registry.stages import StageChange, Stages

# A forge's merge subject names the branch: "Merge pull request #7 from o/gitml/proposals/...".
# What --at accepts: ISO 8601 to the minute, optional seconds, optional Z or offset.
_AT = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2}))?"
    r"(?:(Z)|([+-])(\d{2}):?(\d{2}))?\Z"
)


def parse_at(text: str) -> int:
    """Unix seconds of ``2026-11-01T12:00[:SS][Z|+HH:MM]``; without a zone it is UTC."""
    from gitml.errors import InvalidInput

    match = _AT.match(text.strip())
    problem = None
    if match is not None:
        year, month, day, hour, minute, second, _z, sign, off_h, off_m = match.groups()
        zone = datetime.timezone.utc
        try:
            if sign:
                offset = datetime.timedelta(hours=int(off_h), minutes=int(off_m))
                zone = datetime.timezone(-offset if sign == "-" else offset)
            moment = datetime.datetime(
                int(year), int(month), int(day), int(hour), int(minute), int(second or 0),
                tzinfo=zone,
            )  # fmt: skip
        except ValueError as exc:
            problem = str(exc)
        else:
            return int(moment.timestamp())
    raise InvalidInput(
        f"--at {text!r}: expected a time like 2026-11-01T12:00, with optional seconds "
        "and Z or an offset such as +02:00 (without one it is UTC)"
        + (f"; {problem}" if problem else "")
    )


def _stages(tracking_uri: str | None) -> Stages:
    from gitml.registry.stages import Stages
    from gitml.registry.versions import Registry
    from gitml.tracking.client import Client

    client = Client(tracking_uri)
    return Stages(Registry(client), client.config)


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "-"


def _seconds(unix: int) -> str:
    return utc_time(unix * 1000)


@click.group("stage")
def group() -> None:
    """Declare which model versions each stage serves; propose, audit, roll back."""


@group.command("assign")
@click.argument("model")
@click.argument("version")
@click.argument("stage")
@click.option(
    "--archive-existing",
    is_flag=True,
    help="List the versions this replaces on the archive stage (from .gitml.yaml).",
)
@click.option("--message", "-m", default=None, help="Why: kept in the commit and declaration.")
@click.option(
    "--weight",
    type=int,
    default=100,
    show_default=True,
    help="Share of traffic (1-100); below 100 is a canary beside the version declared now.",
)
@click.option(
    "--propose",
    is_flag=True,
    help="Commit on a branch gitml/proposals/STAGE/MODEL-vVERSION for a pull request instead.",
)
@click.option(
    "--push",
    "remote",
    default=None,
    metavar="REMOTE",
    help="With --propose: push the proposal branch to REMOTE.",
)
@tracking_option
def assign(
    model: str,
    version: str,
    stage: str,
    archive_existing: bool,
    message: str | None,
    weight: int,
    propose: bool,
    remote: str | None,
    tracking_uri: str | None,
) -> None:
    """Declare VERSION of MODEL on STAGE: a commit on branch gitml/STAGE.

    \b
    Examples:
      gitml stage assign churn 4 staging
      gitml stage assign churn 4 production --archive-existing -m "beats v3 on AUC"
      gitml stage assign churn 5 production --weight 10          # a 10% canary
      gitml stage assign churn 5 production --propose --push origin
    """
    if remote is not None and not propose:
        raise click.UsageError("--push REMOTE needs --propose (a direct assignment is not pushed)")
    if archive_existing and propose:
        raise click.UsageError(
            "--archive-existing cannot be combined with --propose: "
            "archive when the proposal is merged, with a direct assignment"
        )
    from gitml.registry.declarations import stage_tip
    from gitml.registry.stages import check_stage

    stages = _stages(tracking_uri)
    before = stage_tip(stages.store, check_stage(stage, stages.config)).commit
    done = stages.assign(
        model,
        version,
        stage,
        weight=weight,
        archive_existing=archive_existing,
        message=message,
        propose=propose,
    )
    served = describe_declaration(done.declaration)
    if propose:
        name = done.ref[len("refs/heads/") :]
        click.echo(
            f"proposed {model} {served} for {stage} on branch {name} ({_short(done.commit)})"
        )
        if remote is None:
            if not _tracked(stages, stage):
                # A pull request needs the branch it merges into on the remote too.
                click.echo(
                    f"push it for review with the branch it merges into (no remote's "
                    f"gitml/{stage} was fetched here): git push <remote> gitml/{stage} {name}",
                    err=True,
                )
            else:
                click.echo(f"push it for review: git push <remote> {name}", err=True)
            return
        pushed = _push(stages, remote, stage, done.ref)
        click.echo(
            f"pushed {' and '.join(pushed)} to {remote}; open a pull request into gitml/{stage}"
        )
        return
    if done.commit == before:
        click.echo(f"{stage} already declares {model} {served}; nothing to commit")
        return
    click.echo(f"{stage}: {model} {served} ({_short(done.commit)})")
    if done.archived:
        archive = stages.config.archive_stage
        listed = ", ".join(f"v{n}" for n in done.archived)
        click.echo(f"{archive}: {model} {listed}")
    _say_unarchived(stages, model, done.unarchived)


def _say_unarchived(stages: Stages, model: str, versions: Sequence[int]) -> None:
    if versions:
        listed = ", ".join(f"v{n}" for n in versions)
        click.echo(f"{stages.config.archive_stage}: {model} {listed} no longer listed")


def _tracked(stages: Stages, stage: str) -> bool:
    """Whether some remote's ``gitml/<stage>`` was fetched here (as ``<remote>/gitml/<stage>``)."""
    from gitml.registry.declarations import tracking_remotes

    return bool(tracking_remotes(stages.store, stage))


def _push(stages: Stages, remote: str, stage: str, ref: str) -> list[str]:
    """``git push --atomic REMOTE ref:ref`` in the store's repository, with the stage branch
    when REMOTE has none (a first promotion: the pull request needs a branch to merge into);
    the branches pushed. git's complaint becomes an error."""
    from gitml.git import command
    from gitml.git.command import GitFailed
    from gitml.registry.declarations import branch

    target = branch(stage)
    refs = [ref]
    names = [ref[len("refs/heads/") :]]
    try:
        if not command.run(["ls-remote", "--heads", remote, target], cwd=stages.store.root).stdout:
            refs.insert(0, target)
            names.insert(0, target[len("refs/heads/") :])
        command.run(
            ["push", "--atomic", remote, *(f"{r}:{r}" for r in refs)], cwd=stages.store.root
        )
    except GitFailed as exc:
        again = f"git push {remote} {' '.join(names)}"
        raise GitFailed(
            f"git push {remote} {' '.join(refs)}",
            f"{exc.said} (the proposal branch exists locally; push it again with '{again}')",
        ) from None
    return names


@group.command("show")
@click.argument("stage", required=False)
@click.option(
    "--at",
    "at",
    default=None,
    metavar="TIME",
    help="What was declared at TIME, e.g. 2026-11-01T12:00 (UTC unless Z/+HH:MM says otherwise).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@tracking_option
def show(stage: str | None, at: str | None, as_json: bool, tracking_uri: str | None) -> None:
    """What STAGE declares (every stage of .gitml.yaml when STAGE is omitted)."""
    from gitml.format import config as config_file
    from gitml.format.record_cache import ValidatedRecords
    from gitml.registry.declarations import check_name, commit_at, declared, stage_tips
    from gitml.tracking.uri import resolve_store

    when = parse_at(at) if at is not None else None
    # The 200 ms budget of this command: no tracking Client (which recovers
    # journals and starts a flusher), and no pydantic for records validated before.
    store, work = resolve_store(tracking_uri)
    cache = ValidatedRecords(store.data_dir)
    stages = config_file.validated((work or store).root, cache)["stages"]
    names = [check_name(stage, stages)] if stage else list(stages)
    tips = stage_tips(store, names)
    _say_remote_read(tips.values())
    found = []
    for name in names:
        commit = tips[name].commit if when is None else commit_at(store, name, when)
        found.append((name, commit, declared(store, name, commit, cache) if commit else {}))
    if as_json:
        emit_json(
            [
                {
                    "stage": name,
                    "ref": tips[name].ref,
                    "commit": commit,
                    "models": [d for _, d in sorted(models.items())],
                }
                for name, commit, models in found
            ]
        )
        return
    rows = [
        [name, model, served_summary(d), _short(commit), d["note"] or ""]
        for name, commit, models in found
        for model, d in sorted(models.items())
    ]
    if not rows:
        who = f"stage '{stage}'" if stage else "no stage"
        what = "no model" if stage else "a model"
        tense = "declares" if when is None else "declared"
        then = "" if when is None else f" at {_seconds(when)} UTC"
        click.echo(f"{who} {tense} {what}{then}", err=True)
        return
    table(["STAGE", "MODEL", "VERSIONS", "COMMIT", "NOTE"], rows)


def _say_remote_read(tips: Iterable[StageTip]) -> None:
    """One line on stderr for each stage read from a remote-tracking branch, and why."""
    for tip in tips:
        if tip.remote is not None:
            local = f"gitml/{tip.stage}"
            why = f"no local {local}" if tip.local is None else f"the local {local} is behind it"
            click.echo(
                f"reading {tip.name}: {why} ('gitml pull {tip.remote}' brings it here)", err=True
            )


def _iso(unix: int) -> str:
    """UTC as ISO 8601 with a Z, as ``gitml lineage --json`` writes times."""
    moment = datetime.datetime.fromtimestamp(unix, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _change_json(stages: Stages, change: StageChange) -> dict[str, Any]:
    merge = None
    if change.merge is not None:
        proposal = stages.store.commit_info(change.merge)
        found = layout.PROPOSAL_IN_TEXT.search(change.subject)
        merge = {
            "commit": proposal.sha,
            "branch": found.group(0) if found else None,
            "proposed_by": proposal.author,
            "proposed_at": _iso(proposal.time),
        }
    return {
        "commit": change.commit,
        "time": _iso(change.time),
        "author": change.author,
        "model": change.model,
        "before": declaration_json(change.before),
        "after": declaration_json(change.after),
        "change": f"{describe_declaration(change.before)} -> {describe_declaration(change.after)}",
        "subject": change.subject,
        "merge": merge,
    }


@group.command("history")
@click.argument("stage")
@click.option("--model", default=None, help="Only changes to this model.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N changes.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@tracking_option
def history(
    stage: str, model: str | None, limit: int | None, as_json: bool, tracking_uri: str | None
) -> None:
    """Who changed what on STAGE, when, and through which merge; newest first.

    A merge commit (a pull request merged into gitml/STAGE) shows its subject
    and, under MERGED, the proposal commit it merged.
    """
    from itertools import islice

    from gitml.registry.declarations import stage_tip
    from gitml.registry.stages import check_stage
    from gitml.registry.versions import check_name

    stages = _stages(tracking_uri)
    check_stage(stage, stages.config)
    if model is not None:
        check_name(model)
    _say_remote_read([stage_tip(stages.store, stage)])
    changes = list(islice(stages.history(stage, model=model), limit))
    if as_json:
        emit_json([_change_json(stages, c) for c in changes])
        return
    if not changes:
        about = f" to '{model}'" if model else ""
        click.echo(f"no changes{about} on stage '{stage}'", err=True)
        return
    table(
        ["TIME (UTC)", "COMMIT", "AUTHOR", "MODEL", "CHANGE", "SUBJECT", "MERGED"],
        [
            [
                _seconds(c.time),
                _short(c.commit),
                c.author.split(" <", 1)[0],
                c.model,
                f"{describe_declaration(c.before)} -> {describe_declaration(c.after)}",
                c.subject,
                _short(c.merge) if c.merge else "",
            ]
            for c in changes
        ],
    )


@group.command("rollback")
@click.argument("stage")
@click.argument("model")
@click.option("--message", "-m", default=None, help="Why: kept in the commit and declaration.")
@tracking_option
def rollback(stage: str, model: str, message: str | None, tracking_uri: str | None) -> None:
    """A new commit on STAGE restoring what it declared for MODEL before its last change."""
    from gitml.registry.versions import check_name

    check_name(model)
    stages = _stages(tracking_uri)
    change = stages.rollback(stage, model, message=message)
    click.echo(f"{stage}: {model} {change.summary} ({_short(change.commit)})")
    _say_unarchived(stages, model, change.unarchived)


@group.command("remove")
@click.argument("stage")
@click.argument("model")
@click.option("--message", "-m", default=None, help="Why: kept in the commit message.")
@tracking_option
def remove(stage: str, model: str, message: str | None, tracking_uri: str | None) -> None:
    """Stop declaring MODEL on STAGE (the reconciler stops serving it)."""
    from gitml.registry.versions import check_name

    check_name(model)
    stages = _stages(tracking_uri)
    commit = stages.remove(model, stage, message=message)
    click.echo(f"{stage}: removed {model} ({_short(commit)})")


@group.command("describe")
@click.argument("rev")
@click.option("--json", "as_json", is_flag=True, help='{"rev": REV, "markdown": ...}')
@tracking_option
def describe(rev: str, as_json: bool, tracking_uri: str | None) -> None:
    """Markdown describing the stage change at REV, for a pull request's description.

    REV is a commit-ish on a stage or proposal branch, e.g.
    gitml/proposals/production/churn-v5 or a commit sha.
    """
    from gitml.registry.lineage_render import describe_stage_change
    from gitml.tracking.client import Client

    client = Client(tracking_uri)
    markdown = describe_stage_change(client.store, rev, client.config)
    if as_json:
        emit_json({"rev": rev, "markdown": markdown})
    else:
        click.echo(markdown.rstrip("\n"))
