"""``gitml lineage``: from a stage, a model version or a run down to the code, as a tree."""

from __future__ import annotations

import click

from gitml.cli.common import emit_json, tracking_option


@click.command("lineage")
@click.argument("target", metavar="URI")
@click.option("--json", "as_json", is_flag=True, help="The lineage as one nested JSON document.")
@tracking_option
def command(target: str, as_json: bool, tracking_uri: str | None) -> None:
    """Walk the commit graph from URI: stage change, version, run, parent runs, code.

    URI is models:/NAME/VERSION (or /latest, @STAGE), runs:/RUN_ID or a run id
    (a unique prefix is enough), or stage:STAGE for every model a stage declares
    (stage:STAGE/NAME for one; gitml/STAGE is the same as stage:STAGE).
    """
    from gitml.registry.lineage import lineage
    from gitml.registry.lineage_render import render_tree
    from gitml.tracking.client import Client

    doc = lineage(Client(tracking_uri), target)
    if as_json:
        emit_json(doc)
    else:
        click.echo(render_tree(doc))
