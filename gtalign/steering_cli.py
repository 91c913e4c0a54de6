"""`gtalign steer ...` (pricing steering evaluation) and `gtalign serve` (the OpenAI-compatible server).

Mounted by `gtalign.cli`::

    from gtalign.steering_cli import serve, steer_app
    app.add_typer(steer_app, name="steer")
    app.command("serve")(serve)

Both read params.yaml (`steering:`, `serve:`) for their defaults and call `gtalign.steering` / `gtalign.serve`, the
functions DVC and Dagster would call. Heavy imports (torch, mlflow, uvicorn) happen inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from gtalign.cli_support import cli_params, fail

steer_app = typer.Typer(
    help="Pricing steering: edit the payoff matrix at </payoff> and continue.", no_args_is_help=True
)

ROOT = typer.Option("--root", help="repo root (params.yaml, artifacts/, mlflow.db)")
PARAMS = typer.Option("--params", help="params file (default: <root>/params.yaml)")
MODEL = typer.Option(
    "--model", help="checkpoint folder or registered model URI, e.g. models:/gtalign-assistant@champion"
)
TRACKING_URI = typer.Option("--tracking-uri", help="MLflow URI (default: $MLFLOW_TRACKING_URI, else <root>/mlflow.db)")


def _threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


@steer_app.command("eval")
def steer_eval(
    model: Annotated[str | None, MODEL] = None,
    root: Annotated[Path, ROOT] = Path("."),
    params: Annotated[Path | None, PARAMS] = None,
    per_source: Annotated[int | None, typer.Option(help="test prompts per source (default: steering.eval)")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="report folder (default: artifacts/steering)")] = None,
    tracking_uri: Annotated[str | None, TRACKING_URI] = None,
    no_track: Annotated[bool, typer.Option("--no-track", help="skip the MLflow run")] = False,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads (1 is fastest on a busy machine)")] = None,
) -> None:
    """Steer held-out prompts under every pricing mode; write the report section, metrics JSON and an MLflow run."""
    from gtalign.evaluate.steering import steering_eval_stage

    _threads(threads)
    try:
        result = steering_eval_stage(
            root.resolve(),
            cli_params(root, params, optional=True),
            model=model,
            per_source=per_source,
            out_dir=out_dir,
            tracking_uri=tracking_uri,
            track=not no_track,
        )
    except (FileNotFoundError, ValueError) as e:
        raise fail(str(e), code=1) from None
    typer.echo(result.markdown)
    typer.echo(
        f"wrote {result.paths['report']}, {result.paths['metrics']}" + (f"; run {result.run_id}" * bool(result.run_id))
    )


@steer_app.command("words")
def steer_words(
    demonstrations: Annotated[
        Path, typer.Argument(help="JSONL with a `completion` (chat list or text) per line")
    ] = Path("artifacts/demonstrations/demonstrations.jsonl"),
) -> None:
    """Expected words per action (DA, CQ, AQ) from four-block completions: the table `steering.expected_words` uses."""
    from gtalign.steering import expected_words_from_completions

    if not demonstrations.is_file():
        raise fail(f"{demonstrations}: no such file (run `gtalign data demonstrations` first)", code=1)

    def texts():
        with demonstrations.open(encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                completion = row.get("completion")
                yield completion[-1]["content"] if isinstance(completion, list) else str(completion)

    typer.echo(json.dumps(expected_words_from_completions(texts()), indent=2))


def serve(
    model: Annotated[str | None, MODEL] = None,
    host: Annotated[str | None, typer.Option(help="bind address (default: serve.host, 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: serve.port)")] = None,
    root: Annotated[Path, ROOT] = Path("."),
    params: Annotated[Path | None, PARAMS] = None,
    served_model_name: Annotated[str | None, typer.Option(help="model id clients send")] = None,
    device: Annotated[str | None, typer.Option(help="torch device, e.g. cuda")] = None,
    tracking_uri: Annotated[str | None, TRACKING_URI] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
) -> None:
    """Serve the assistant over an OpenAI-compatible API; `pricing` ("api" | "subscription") is a request field."""
    from gtalign.serve import build_engine, run_server, serve_settings
    from gtalign.steering import steering_config

    _threads(threads)
    p = cli_params(root, params, optional=True)
    try:
        settings = serve_settings(
            p, model=model, host=host, port=port, served_model_name=served_model_name, device=device
        )
        steering = steering_config(p)
        engine = build_engine(
            settings.model, root=root.resolve(), steering=steering, settings=settings, tracking_uri=tracking_uri
        )
    except (FileNotFoundError, ValueError) as e:
        raise fail(str(e), code=1) from None
    if settings.host not in ("127.0.0.1", "localhost", "::1") and not _key_set(settings.api_key_env):
        typer.echo(f"warning: binding {settings.host} without an API key (set ${settings.api_key_env})", err=True)
    typer.echo(f"serving {engine.name} on http://{settings.host}:{settings.port}/v1", err=True)
    run_server(engine, settings)


def _key_set(env: str) -> bool:
    import os

    return bool(env and os.environ.get(env))
