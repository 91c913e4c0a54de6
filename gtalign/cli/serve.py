"""`gtalign serve`: the assistant over an OpenAI-compatible HTTP API (settings from params.yaml `serve:`; steering
from the registered model, or params.yaml `steering:`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from gtalign.cli.options import Model, ParamsFile, RootTracked, TrackingUri
from gtalign.cli.support import cli_params, exit_on, set_threads
from gtalign.serve import build_engine, run_server, serve_settings

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(
    model: Model = None,
    host: Annotated[str | None, typer.Option(help="bind address (default: serve.host, 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: serve.port)")] = None,
    root: RootTracked = Path("."),
    params: ParamsFile = None,
    served_model_name: Annotated[str | None, typer.Option(help="model id clients send")] = None,
    device: Annotated[str | None, typer.Option(help="torch device, e.g. cuda")] = None,
    tracking_uri: TrackingUri = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
    steering_from: Annotated[
        str | None,
        typer.Option(
            help="model: a registered model's own steering settings (as its MLflow pyfunc); params: params.yaml "
            "`steering:` (default: serve.steering_from)"
        ),
    ] = None,
) -> None:
    """Serve the assistant over an OpenAI-compatible API; `pricing` ("api" | "subscription") is a request field."""
    set_threads(threads)
    p = cli_params(root, params, optional=True)
    with exit_on(FileNotFoundError, ValueError):
        settings = serve_settings(
            p.serve,
            model=model,
            host=host,
            port=port,
            served_model_name=served_model_name,
            device=device,
            steering_from=steering_from,
        )
        engine = build_engine(
            settings.model,
            root=root.resolve(),
            steering=p.steering,
            settings=settings,
            tracking_uri=tracking_uri,
        )
    if settings.host not in LOOPBACK and not (settings.api_key_env and os.environ.get(settings.api_key_env)):
        typer.echo(f"warning: binding {settings.host} without an API key (set ${settings.api_key_env})", err=True)
    steer = engine.steering_summary()
    typer.echo(
        f"serving {engine.name} on http://{settings.host}:{settings.port}/v1; steering from {steer['from']}: "
        f"{steer['transform']} at {steer['price_per_100_words']:g} per 100 words, analyze by {steer['analyze']}",
        err=True,
    )
    run_server(engine, settings)
