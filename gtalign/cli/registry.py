"""`gtalign registry ...`: register the trained policy, run the promotion gate, inspect and query the registry.

Every command reads params.yaml `registry:` for its defaults and calls `gtalign.registry`, the same functions the DVC
stage and Dagster use.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from gtalign.cli.options import ParamsFile, RootTracked
from gtalign.cli.support import cli_params, exit_on
from gtalign.registry import (
    PromotionDecision,
    Registration,
    RegistryError,
    describe,
    promote_from_params,
    register_from_params,
    release,
    write_decision,
)
from gtalign.tracking import default_tracking_uri

registry_app = typer.Typer(
    help="MLflow model registry: register the assistant (challenger), promote it by the gate (champion).",
    no_args_is_help=True,
)

TRACKING_URI = typer.Option(
    "--tracking-uri",
    help="MLflow tracking/registry URI (default: $MLFLOW_TRACKING_URI, else sqlite:///<root>/mlflow.db)",
)


@registry_app.command("register")
def register_cmd(
    root: RootTracked = Path("."),
    params: ParamsFile = None,
    model_dir: Annotated[
        Path | None, typer.Option(help="Hugging Face checkpoint folder (default: registry.model_dir)")
    ] = None,
    metrics: Annotated[
        Path | None, typer.Option(help="evaluation metrics JSON, a flat dict (default: registry.metrics_file)")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="whose metrics in the file describe the checkpoint (default: registry.evaluated_model)"),
    ] = None,
    tracking_uri: Annotated[str | None, TRACKING_URI] = None,
) -> None:
    """Log the checkpoint as the assistant pyfunc and register it as a new version with the alias `challenger`."""
    root = root.resolve()
    typed = cli_params(root, params, optional=True)
    with exit_on(RegistryError):
        reg = register_from_params(
            root,
            typed.registry,
            model_dir=model_dir,
            metrics_file=metrics,
            evaluated_model=model,
            tracking_uri=tracking_uri or default_tracking_uri(root),
            steering=typed.steering,
        )
    _echo_registration(reg)


@registry_app.command("promote")
def promote_cmd(
    root: RootTracked = Path("."),
    params: ParamsFile = None,
    tolerance: Annotated[
        float | None, typer.Option(min=0.0, help="max allowed drop of any source's answer quality (default: params)")
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="write the decision JSON here (default: registry.decision_file)")
    ] = None,
    fail_on_reject: Annotated[bool, typer.Option(help="exit 3 when the challenger is rejected")] = False,
    tracking_uri: Annotated[str | None, TRACKING_URI] = None,
) -> None:
    """Run the promotion gate: @challenger becomes @champion only if it beats it without hurting any source."""
    root = root.resolve()
    p = cli_params(root, params, optional=True)
    with exit_on(RegistryError):
        decision = promote_from_params(p.registry, tracking_uri or default_tracking_uri(root), tolerance=tolerance)
    path = write_decision(decision, output or root / p.registry.decision_file)
    _echo_decision(decision)
    typer.echo(f"decision written to {path}")
    if fail_on_reject and not decision.promoted:
        raise typer.Exit(3)


@registry_app.command("release")
def release_cmd(
    root: RootTracked = Path("."),
    params: ParamsFile = None,
    model_dir: Annotated[Path | None, typer.Option(help="checkpoint folder (default: registry.model_dir)")] = None,
    metrics: Annotated[Path | None, typer.Option(help="evaluation JSON (default: registry.metrics_file)")] = None,
    output: Annotated[Path | None, typer.Option(help="decision JSON (default: registry.decision_file)")] = None,
    tracking_uri: Annotated[str | None, TRACKING_URI] = None,
) -> None:
    """register + promote in one command (the DVC stage)."""
    # gtalign.registry.release, as the demo's last step: each of registry.candidates is registered and judged in turn
    root = root.resolve()
    typed = cli_params(root, params, optional=True)
    try:
        cfg = typed.registry.overridden(model_dir=model_dir, metrics_file=metrics, decision_file=output)
    except RegistryError as e:
        raise typer.BadParameter(str(e), param_hint="--model-dir") from None
    with exit_on(RegistryError):
        done = release(root, cfg, tracking_uri=tracking_uri or default_tracking_uri(root), steering=typed.steering)
    _echo_registration(done.registration)
    if cfg.candidates:
        for line in done.lines():
            typer.echo(f"candidate {line}")
    _echo_decision(done.decision)
    typer.echo(f"decision written to {root / cfg.decision_file}")


def _echo_registration(reg: Registration) -> None:
    typer.echo(f"registered {reg.name} v{reg.version} as @{reg.alias} ({reg.model_uri}, run {reg.run_id})")
    for key, value in sorted(reg.metrics.items()):
        typer.echo(f"  {key} = {value:.4f}")


def _echo_decision(decision: PromotionDecision) -> None:
    typer.echo(f"{decision.name} v{decision.version}: {decision.decision.upper()} (champion: v{decision.champion})")
    for reason in decision.reasons:
        typer.echo(f"  - {reason}")


@registry_app.command("show")
def show_cmd(
    root: RootTracked = Path("."),
    params: ParamsFile = None,
    tracking_uri: Annotated[str | None, TRACKING_URI] = None,
) -> None:
    """The champion and challenger versions with their metrics and promotion tags, as JSON."""
    root = root.resolve()
    name = cli_params(root, params, optional=True).registry.model_name
    typer.echo(json.dumps(describe(tracking_uri or default_tracking_uri(root), name), indent=2))


@registry_app.command("predict")
def predict_cmd(
    prompts: Annotated[list[str], typer.Argument(help="user messages, one chat each")],
    root: RootTracked = Path("."),
    params: ParamsFile = None,
    alias: Annotated[str, typer.Option(help="champion | challenger")] = "champion",
    max_new_tokens: Annotated[int | None, typer.Option(min=1, help="default: the model's signature")] = None,
    temperature: Annotated[float | None, typer.Option(min=0.0)] = None,
    return_: Annotated[str, typer.Option("--return", help="full | response")] = "full",
    pricing: Annotated[
        str | None, typer.Option(help="subscription | api: steer the answer's matrix (default: native)")
    ] = None,
    tracking_uri: Annotated[str | None, TRACKING_URI] = None,
) -> None:
    """Load `models:/<name>@<alias>` like any client would and answer the prompts (one JSON line each)."""
    import mlflow  # local: keeps gtalign --help light

    root = root.resolve()
    name = cli_params(root, params, optional=True).registry.model_name
    uri = tracking_uri or default_tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/{name}@{alias}")
    run_params: dict[str, Any] = {"return": return_}
    if max_new_tokens is not None:
        run_params["max_new_tokens"] = max_new_tokens
    if temperature is not None:
        run_params["temperature"] = temperature
    if pricing is not None:
        run_params["pricing"] = pricing
    with exit_on(ValueError):  # an unknown --pricing or --return: the model's message names the allowed values
        out = model.predict([{"messages": [{"role": "user", "content": p}]} for p in prompts], params=run_params)
    for row in out.to_dict("records"):
        typer.echo(json.dumps(row, ensure_ascii=False))
