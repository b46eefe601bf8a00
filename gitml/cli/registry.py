"""``gitml models register|list|show|versions|tag|describe|delete-version``: the model registry.

These commands join the ``gitml models`` group (``models.py`` holds serving);
``attach`` adds them, so the two modules stay independent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, overload

import click

from gitml.cli.common import emit_json, table, tracking_option, utc_time, warn_malformed
from gitml.registry.declarations import served_summary

if TYPE_CHECKING:
    from gitml.errors import InvalidRecord
    from gitml.format.records import ModelVersion, StageDeclaration
    from gitml.registry.versions import Registry


def _registry(tracking_uri: str | None) -> Registry:
    from gitml.registry.versions import Registry
    from gitml.tracking.client import Client

    return Registry(Client(tracking_uri))


def parse_tags(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``KEY=VALUE`` arguments as a mapping; the value may be empty or hold '='."""
    from gitml.errors import InvalidInput

    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"tag {pair!r}: expected KEY=VALUE, e.g. team=growth")
        tags[key] = value
    return tags


def _registration_commit(registry: Registry, name: str, number: int) -> str | None:
    """The commit that registered version ``number`` (walking back from the model's tip)."""
    from gitml.format.readers import registration_commit

    found = registration_commit(registry.store, name, number)
    return None if found is None else found.sha


def _stages_of(registry: Registry, name: str) -> dict[str, StageDeclaration]:
    """What each configured stage declares for model ``name`` (stages without it left out)."""
    from gitml.registry.declarations import read_declaration

    found = {}
    for stage in registry.client.config.stages:
        declared = read_declaration(registry.store, stage, name)
        if declared is not None:
            found[stage] = declared
    return found


def _version_row(version: ModelVersion, stage_names: str) -> list[str]:
    return [
        str(version.version),
        version.status,
        utc_time(version.creation_time),
        version.user,
        version.run_id[:12],
        stage_names,
        version.description or "",
    ]


_VERSION_HEADERS = ["VERSION", "STATUS", "CREATED (UTC)", "USER", "RUN", "STAGES", "DESCRIPTION"]


def _stage_labels(declared: dict[str, StageDeclaration]) -> dict[int, list[str]]:
    """Version number to the stages declaring it: ``production``, or ``staging 10%``."""
    labels: dict[int, list[str]] = {}
    for stage, declaration in declared.items():
        for served in declaration.versions:
            share = f" {served.weight}%" if len(declaration.versions) > 1 and served.weight else ""
            labels.setdefault(served.version, []).append(stage + share)
    return labels


@overload
def declaration_json(declared: StageDeclaration) -> dict[str, Any]: ...
@overload
def declaration_json(declared: None) -> None: ...
def declaration_json(declared: StageDeclaration | None) -> dict[str, Any] | None:
    # The record's own JSON, as the UI API answers it, without the model it is filed under.
    return None if declared is None else declared.model_dump(mode="json", exclude={"model"})


@click.command("register")
@click.argument("model_uri")
@click.argument("name")
@click.option("--description", "-d", default=None, help="The new version's description.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="A version tag; repeat.")
@click.option("--json", "as_json", is_flag=True, help="The version record and commit as JSON.")
@tracking_option
def register(
    model_uri: str,
    name: str,
    description: str | None,
    tags: tuple[str, ...],
    as_json: bool,
    tracking_uri: str | None,
) -> None:
    """Register the model at MODEL_URI (runs:/<run_id>/<path>) as the next version of NAME.

    NAME is created on first use. The registration is a commit on
    refs/gitml/models/NAME whose second parent is the run's commit.
    """
    tag_values = parse_tags(tags)
    registry = _registry(tracking_uri)
    version = registry.register(model_uri, name, description=description, tags=tag_values)
    commit = _registration_commit(registry, name, version.version)
    if as_json:
        emit_json({"version": version.to_plain(), "commit": commit})
        return
    click.echo(f"registered {name} version {version.version} (commit {(commit or '?')[:12]})")


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@tracking_option
def list_models(as_json: bool, tracking_uri: str | None) -> None:
    """Registered models, by name, with their latest version."""
    registry = _registry(tracking_uri)
    rows: list[dict[str, Any]] = []
    problems: list[InvalidRecord] = []
    for model in registry.list_models(problems):
        live = registry.versions(model.name, problems=problems)
        rows.append(
            {
                "name": model.name,
                "latest_version": live[-1].version if live else None,
                "versions": len(live),
                "description": model.description,
                "creation_time": model.creation_time,
                "tags": model.tags,
            }
        )
    warn_malformed(problems)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no registered models (register one with 'gitml models register')", err=True)
        return
    table(
        ["NAME", "LATEST", "VERSIONS", "CREATED (UTC)", "DESCRIPTION"],
        [
            [
                r["name"],
                "-" if r["latest_version"] is None else str(r["latest_version"]),
                str(r["versions"]),
                utc_time(r["creation_time"]),
                r["description"] or "",
            ]
            for r in rows
        ],
    )


@click.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@tracking_option
def show(name: str, as_json: bool, tracking_uri: str | None) -> None:
    """One registered model: description, tags, every version and the stages declaring it."""
    registry = _registry(tracking_uri)
    model = registry.get_model(name)
    versions = registry.versions(name, include_deleted=True)
    declared = _stages_of(registry, name)
    if as_json:
        emit_json(
            {
                "model": model.to_plain(),
                "versions": [v.to_plain() for v in versions],
                "stages": {stage: declaration_json(d) for stage, d in declared.items()},
            }
        )
        return
    click.echo(f"model        {model.name}")
    click.echo(f"description  {model.description or ''}".rstrip())
    click.echo(f"created      {utc_time(model.creation_time)} UTC")
    tags = ", ".join(f"{k}={v}" for k, v in model.tags.items())
    click.echo(f"tags         {tags or 'none'}")
    summary = [f"{stage} {served_summary(declaration_json(d))}" for stage, d in declared.items()]
    click.echo(f"stages       {', '.join(summary) or 'none'}")
    click.echo("\nVersions" + ("" if versions else ": none"))
    if versions:
        labels = _stage_labels(declared)
        table(
            _VERSION_HEADERS,
            [_version_row(v, ", ".join(labels.get(v.version, []))) for v in versions],
        )


@click.command("versions")
@click.argument("name")
@click.option("--all", "show_all", is_flag=True, help="Deleted versions too.")
@click.option("--json", "as_json", is_flag=True, help="Full version records as JSON.")
@tracking_option
def versions(name: str, show_all: bool, as_json: bool, tracking_uri: str | None) -> None:
    """The versions of model NAME, oldest first."""
    registry = _registry(tracking_uri)
    found = registry.versions(name, include_deleted=show_all)
    if as_json:
        emit_json([v.to_plain() for v in found])
        return
    if not found:
        click.echo(f"model '{name}' has no versions", err=True)
        return
    labels = _stage_labels(_stages_of(registry, name))
    table(_VERSION_HEADERS, [_version_row(v, ", ".join(labels.get(v.version, []))) for v in found])


@click.command("tag")
@click.argument("name")
@click.argument("args", nargs=-1, metavar="[VERSION] KEY=VALUE...")
@click.option("--delete", "delete", multiple=True, metavar="KEY", help="Remove this tag; repeat.")
@tracking_option
def tag(
    name: str, args: tuple[str, ...], delete: tuple[str, ...], tracking_uri: str | None
) -> None:
    """Set tags on model NAME, or on one of its versions when VERSION is given.

    \b
    Examples:
      gitml models tag churn team=growth
      gitml models tag churn 3 validated=true --delete candidate
    """
    version, pairs = (args[0], list(args[1:])) if args and args[0].isdigit() else (None, list(args))
    if pairs and "=" not in pairs[0] and version is None:
        from gitml.errors import InvalidInput

        raise InvalidInput(f"'{pairs[0]}' is neither a VERSION (a positive integer) nor KEY=VALUE")
    set_tags = parse_tags(pairs)
    if not set_tags and not delete:
        raise click.UsageError("give at least one KEY=VALUE to set or --delete KEY to remove")
    registry = _registry(tracking_uri)
    if version is None:
        registry.update_model(name, set_tags=set_tags, delete_tags=delete)
        click.echo(f"tagged model {name}")
    else:
        updated = registry.update_version(name, version, set_tags=set_tags, delete_tags=delete)
        click.echo(f"tagged {name} version {updated.version}")


@click.command("describe")
@click.argument("name")
@click.argument("args", nargs=-1, required=True, metavar="[VERSION] TEXT")
@tracking_option
def describe(name: str, args: tuple[str, ...], tracking_uri: str | None) -> None:
    """Set the description of model NAME, or of one version when VERSION is given."""
    if len(args) > 2:
        raise click.UsageError("expected NAME [VERSION] TEXT; quote a TEXT with spaces")
    version, rest = (args[0], [args[1]]) if len(args) == 2 else (None, list(args))
    registry = _registry(tracking_uri)
    if version is None:
        registry.update_model(name, description=rest[0])
        click.echo(f"described model {name}")
    else:
        updated = registry.update_version(name, version, description=rest[0])
        click.echo(f"described {name} version {updated.version}")


@click.command("delete-version")
@click.argument("name")
@click.argument("version")
@tracking_option
def delete_version(name: str, version: str, tracking_uri: str | None) -> None:
    """Mark VERSION of NAME deleted; its number is never given out again."""
    registry = _registry(tracking_uri)
    deleted = registry.delete_version(name, version)
    click.echo(f"deleted {name} version {deleted.version}")
    still = [
        stage
        for stage, d in _stages_of(registry, name).items()
        if stage != registry.client.config.archive_stage
        and any(v.version == deleted.version for v in d.versions)
    ]
    if still:
        # The reconciler keeps serving what a stage declares; say so rather than refuse.
        click.echo(
            f"warning: {', '.join(still)} still declare(s) version {deleted.version}; "
            "assign another with 'gitml stage assign'",
            err=True,
        )


@click.command("delete")
@click.argument("name")
@tracking_option
def delete_model(name: str, tracking_uri: str | None) -> None:
    """Mark model NAME and its versions deleted, in one commit that keeps their history;
    refused while a stage branch declares it."""
    from gitml.format.layout import model_ref

    _registry(tracking_uri).delete_model(name)
    click.echo(f"deleted model {name} (its history stays on {model_ref(name)})")


COMMANDS = (register, list_models, show, versions, tag, describe, delete_version, delete_model)


def attach(group: click.Group) -> None:
    """Add the registry commands to ``gitml models``."""
    for command in COMMANDS:
        group.add_command(command)  # by name: attaching twice changes nothing
