"""``gitml models``: serve a model over MLflow's scoring protocol, or score a file once."""

from __future__ import annotations

import gc
import ipaddress
import os
from pathlib import Path

import click

from gitml.errors import InvalidInput


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.group("models")
def group() -> None:
    """Register models and their versions; serve them and score input."""


@group.command("serve")
@click.option("-m", "--model-uri", required=True, help="The model: a path or runs:/<id>/<path>.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("-p", "--port", default=5000, show_default=True, type=int)
@click.option("-w", "--workers", default=1, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--token",
    envvar="GITML_SERVE_TOKEN",
    default=None,
    help="Require 'Authorization: Bearer TOKEN' on /invocations; needed off loopback.",
)
@click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Or bearer tokens, one 'TOKEN read|write' per line (as gitml server reads them).",
)
@click.option(
    "--max-body-bytes",
    default=10 * 1024 * 1024,
    show_default=True,
    type=click.IntRange(min=1),
    help="Largest request body accepted (413 above it).",
)
def serve(
    model_uri: str,
    host: str,
    port: int,
    workers: int,
    token: str | None,
    token_file: Path | None,
    max_body_bytes: int,
) -> None:
    """Serve MODEL_URI: POST /invocations, GET /ping, /health, /version."""
    from gitml.server.auth import read_tokens

    if token and token_file is not None:
        raise InvalidInput("give --token or --token-file, not both")
    if token_file is not None:
        read_tokens(token_file)  # a malformed file is refused before anything starts
    if not is_loopback(host) and not token and token_file is None:
        # A scoring server runs a pickled model on any input it is sent; off
        # the machine it must at least know who is asking.
        raise InvalidInput(
            f"--host {host} is reachable from other machines; "
            "give --token (or GITML_SERVE_TOKEN) or --token-file to require a bearer token, "
            "or bind 127.0.0.1"
        )
    # Start-up creates some 240,000 objects (numpy, scipy, pandas, the model)
    # and keeps nearly all of them; the cyclic collector's passes over them
    # while they are imported are about a tenth of the time until /ping
    # answers, for nothing. It is off until the app is built; then what was
    # loaded is frozen out of its sight (gc.freeze), so re-enabling it costs no
    # pass over that heap, and no collection while serving walks it either.
    gc.disable()
    try:
        _serve(model_uri, host, port, workers, token, token_file, max_body_bytes)
    finally:
        gc.enable()


def _serve(
    model_uri: str,
    host: str,
    port: int,
    workers: int,
    token: str | None,
    token_file: Path | None,
    max_body_bytes: int,
) -> None:
    import uvicorn

    from gitml.serving import scoring_app

    click.echo(f"serving {model_uri} on http://{host}:{port} ({workers} worker(s))", err=True)
    # No websockets: the scoring protocol has none, and probing for a websocket
    # library is start-up time spent before the first request.
    settings = {
        "host": host,
        "port": port,
        "access_log": False,
        "log_level": "warning",
        "ws": "none",
    }
    if workers == 1:
        from gitml.server.auth import read_tokens

        app = scoring_app.create_app(
            scoring_app.load_model(model_uri),
            token=token,
            tokens=read_tokens(token_file) if token_file is not None else None,
            max_body_bytes=max_body_bytes,
        )
        gc.freeze()
        gc.enable()
        uvicorn.run(app, **settings)  # type: ignore[arg-type]
        return
    gc.enable()
    # Several workers are separate processes: each loads the model itself.
    os.environ[scoring_app.ENV_MODEL_URI] = model_uri
    os.environ[scoring_app.ENV_MAX_BODY] = str(max_body_bytes)
    if token:
        os.environ[scoring_app.ENV_TOKEN] = token
    if token_file is not None:
        os.environ[scoring_app.ENV_TOKEN_FILE] = str(token_file.resolve())
    uvicorn.run(
        "gitml.serving.scoring_app:app_from_environment",
        factory=True,
        workers=workers,
        **settings,  # type: ignore[arg-type]
    )


@group.command("predict")
@click.option("-m", "--model-uri", required=True, help="The model: a path or runs:/<id>/<path>.")
@click.option(
    "-i",
    "--input-path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A request body: JSON in MLflow's scoring format, or CSV with a header.",
)
@click.option(
    "-t",
    "--content-type",
    type=click.Choice(["json", "csv"]),
    default=None,
    help="The input's format (default: from its extension, else json).",
)
@click.option(
    "-o",
    "--output-path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the predictions here instead of to stdout.",
)
def predict(
    model_uri: str, input_path: Path, content_type: str | None, output_path: Path | None
) -> None:
    """Score INPUT with MODEL_URI once; print {"predictions": ...}."""
    from gitml.serving import scoring
    from gitml.serving.scoring_app import load_model

    kind = content_type or ("csv" if input_path.suffix.lower() == ".csv" else "json")
    mime = scoring.CONTENT_TYPE_CSV if kind == "csv" else scoring.CONTENT_TYPE_JSON
    model = load_model(model_uri)
    body = input_path.read_bytes()
    result = scoring.predictions_json(
        scoring.predict(model, scoring.parse_request(body, mime))
    ).decode()
    if output_path is None:
        click.echo(result)
    else:
        output_path.write_text(result + "\n")
