"""`gtalign eval ...`: generate and evaluate models, or recompute the report from saved generations. Examples::

    gtalign eval run --model sft=artifacts/models/sft --model gtalign=artifacts/models/rl_cobb_douglas \\
        --run-id gtalign=<mlflow run id>
    gtalign eval report                  # every model under artifacts/evaluation/, no model loaded
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gtalign.cli.options import ParamsFile, Presets, Sets
from gtalign.cli.support import cli_params, exit_on, fail
from gtalign.config import Params
from gtalign.evaluate.generate import GenerationMismatchError
from gtalign.evaluate.stages import EvaluateResult, evaluate_stage, evaluation_stage, report_stage

eval_app = typer.Typer(
    help="Evaluation: generation on the held-out sets, the paper's tables, the report.", no_args_is_help=True
)

ROOT = typer.Option("--root", help="repo root")
JUDGE = typer.Option(help="override evaluate.judge: column | rule | openai")
EVAL_ERRORS = (GenerationMismatchError, FileNotFoundError, ValueError)


@eval_app.command("run")
def eval_run(
    model: Annotated[list[str], typer.Option("--model", "-m", help="NAME=PATH (repeat); a folder or a hub name")],
    run_id: Annotated[
        list[str] | None, typer.Option("--run-id", help="NAME=MLFLOW_RUN_ID of the training run (repeat)")
    ] = None,
    root: Annotated[Path, ROOT] = Path("."),
    params: ParamsFile = None,
    judge: Annotated[str | None, JUDGE] = None,
    per_source: Annotated[int | None, typer.Option(min=1, help="override evaluate.per_source")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(min=1, help="override evaluate.max_new_tokens")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="override evaluate.batch_size")] = None,
    overwrite: Annotated[bool, typer.Option(help="discard saved generations instead of resuming")] = False,
    track: Annotated[bool, typer.Option(help="log one MLflow run per model")] = True,
) -> None:
    """Generate on the held-out prompts with each model (resuming saved work), score, compare, write the report."""
    models = _pairs(model, "--model")
    if not models:
        raise fail("give at least one --model NAME=PATH")
    overrides = {"judge": judge, "per_source": per_source, "max_new_tokens": max_new_tokens, "batch_size": batch_size}
    p = _params(root, params, overrides)
    with exit_on(*EVAL_ERRORS):
        result = evaluate_stage(
            root.resolve(), p, models, training_run_ids=_pairs(run_id, "--run-id"), track=track, overwrite=overwrite
        )
    _summary(result)


@eval_app.command("report")
def eval_report(
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="model folder names to include, in order (default: all)")
    ] = None,
    root: Annotated[Path, ROOT] = Path("."),
    params: ParamsFile = None,
    judge: Annotated[str | None, JUDGE] = None,
    track: Annotated[bool, typer.Option(help="also log one MLflow run per model")] = False,
    plots: Annotated[bool, typer.Option(help="draw the PNG plots")] = True,
) -> None:
    """Recompute every metric, the report and evaluation.json from saved generations (no model is loaded)."""
    p = _params(root, params, {"judge": judge})
    with exit_on(FileNotFoundError, ValueError):
        result = report_stage(root.resolve(), p, model or None, track=track, plots=plots)
    _summary(result)


@eval_app.command("pipeline")
def eval_pipeline(
    root: Annotated[Path, ROOT] = Path("."),
    params: ParamsFile = None,
    preset: Presets = None,
    set_: Sets = None,
) -> None:
    """Evaluate the pipeline's own models (base, sft, each RL variant of `pipeline.variants`) and write the report.

    `--preset configs/presets/paper.yaml` or `--set 'pipeline.variants=[cobb_douglas,user]'` picks the variants."""
    with exit_on(*EVAL_ERRORS):
        result = evaluation_stage(root.resolve(), _params(root, params, {}, preset, set_))
    _summary(result)


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    """`NAME=VALUE` options (repeatable) as a dict, each name once."""
    out: dict[str, str] = {}
    for v in values or []:
        name, sep, value = v.partition("=")
        if not sep or not name or not value:
            raise fail(f"{option} expects NAME=VALUE, got {v!r}")
        if name in out:
            raise fail(f"{option}: {name!r} given twice")
        out[name] = value
    return out


def _params(
    root: Path,
    params: Path | None,
    overrides: dict[str, object],
    presets: list[Path] | None = None,
    sets: list[str] | None = None,
) -> Params:
    """params.yaml with the command's `evaluate:` overrides (None = keep params) laid over."""
    return cli_params(root, params, presets=presets, sets=sets, overrides={"evaluate": overrides})


def _summary(result: EvaluateResult) -> None:
    """Welfare per model and source (judge failures shown where there were any), then where the report went."""
    console = Console(stderr=True)
    table = Table(title="evaluation (social welfare by source)")
    sources = list(dict.fromkeys(s for ev in result.evaluations.values() for s in ev.sources))
    table.add_column("model")
    for s in sources:
        table.add_column(s, justify="right")
    for name, ev in result.evaluations.items():
        cells = []
        for s in sources:
            v = ev.sources[s].value("welfare") if s in ev.sources else None
            failures = ev.sources[s].counts.get("judge_failures", 0) if s in ev.sources else 0
            cells.append(("–" if v is None else f"{v:.3f}") + (f" ({failures} judge fail)" if failures else ""))
        table.add_row(name, *cells)
    console.print(table)
    console.print(f"report: {result.paths.get('report_md')}  metrics: {result.paths.get('metrics')}")
    for name, rid in result.run_ids.items():
        console.print(f"MLflow run for {name}: {rid}")
