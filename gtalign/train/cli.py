"""`gtalign train ...`: base model, SFT warm start, welfare-reward RL (mounted by gtalign/cli.py as `train`).

Each command runs one `gtalign.train.stages` function with params.yaml, optionally overlaid by a preset
(`--preset configs/train/qwen2.5-3b.yaml`) and `--set section.key=value` overrides. TRL shows its own progress bar;
the summary goes to stderr. Runs under `accelerate launch -m gtalign.train.cli ...` as well: only rank 0 prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gtalign.cli_support import PRESET_OPTION, SET_OPTION, cli_params, fail, parsed

train_app = typer.Typer(help="Training: base model, SFT warm start, welfare-reward RL (GRPO).", no_args_is_help=True)

ROOT_OPTION = typer.Option("--root", help="repo root (where params.yaml, data/ and artifacts/ live)")
PARAMS_OPTION = typer.Option("--params", help="params file (default: <root>/params.yaml)")
NO_TRACK_OPTION = typer.Option("--no-track", help="skip MLflow tracking")


def _summary(title: str, metrics: dict[str, float], keys: list[str], path: Path | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    from gtalign.train.common import is_main_process

    if not is_main_process():
        return
    table = Table(title=title, show_header=False)
    if path is not None:
        table.add_row("output", str(path))
    for key in keys:
        if key in metrics:
            value = metrics[key]
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console(stderr=True).print(table)


def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    from pydantic import ValidationError

    try:
        return fn(*args, **kwargs)
    except (FileNotFoundError, ValidationError, ValueError) as e:
        raise fail(str(e), code=1) from None


@train_app.command("base")
def base(
    root: Annotated[Path, ROOT_OPTION] = Path("."),
    params: Annotated[Path | None, PARAMS_OPTION] = None,
    preset: Annotated[list[Path] | None, PRESET_OPTION] = None,
    set_: Annotated[list[str] | None, SET_OPTION] = None,
    no_track: Annotated[bool, NO_TRACK_OPTION] = False,
) -> None:
    """Build the base model (tiny: tokenizer trained on curated text + demonstrations) -> artifacts/models/base."""
    from gtalign.train.stages import base_model_stage

    result = _run(
        base_model_stage,
        root.resolve(),
        parsed(cli_params(root, params, presets=preset, sets=set_)),
        track=not no_track,
    )
    _summary(f"base model ({result.kind})", result.metrics, list(result.metrics), result.path)


@train_app.command("sft")
def sft(
    root: Annotated[Path, ROOT_OPTION] = Path("."),
    params: Annotated[Path | None, PARAMS_OPTION] = None,
    preset: Annotated[list[Path] | None, PRESET_OPTION] = None,
    set_: Annotated[list[str] | None, SET_OPTION] = None,
    no_track: Annotated[bool, NO_TRACK_OPTION] = False,
    no_eval: Annotated[bool, typer.Option("--no-eval", help="skip the held-out evaluation")] = False,
) -> None:
    """SFT warm start on the demonstrations -> artifacts/models/sft (resumes a killed run from its last checkpoint)."""
    from gtalign.train.stages import sft_stage

    result = _run(
        sft_stage,
        root.resolve(),
        parsed(cli_params(root, params, presets=preset, sets=set_)),
        track=not no_track,
        evaluate=not no_eval,
    )
    keys = ["global_step", "loss_first", "loss_final", "train_seconds", "train_tokens_per_second"]
    keys += ["init_strict_valid", "heldout_strict_valid", "init_welfare", "heldout_welfare", "eval_seconds"]
    _summary("SFT", result.metrics, keys, result.path)


@train_app.command("rl")
def rl(
    variant: Annotated[
        str | None,
        typer.Option(help="cobb_douglas (GTAlign) | user | llm | linear | ces (default: params rl.variant)"),
    ] = None,
    root: Annotated[Path, ROOT_OPTION] = Path("."),
    params: Annotated[Path | None, PARAMS_OPTION] = None,
    preset: Annotated[list[Path] | None, PRESET_OPTION] = None,
    set_: Annotated[list[str] | None, SET_OPTION] = None,
    no_track: Annotated[bool, NO_TRACK_OPTION] = False,
    no_eval: Annotated[bool, typer.Option("--no-eval", help="skip the held-out evaluation")] = False,
) -> None:
    """Welfare-reward GRPO -> artifacts/models/rl-<variant> (resumes a killed run from its last checkpoint)."""
    from gtalign.train.stages import rl_stage

    result = _run(
        rl_stage,
        root.resolve(),
        parsed(cli_params(root, params, presets=preset, sets=set_)),
        variant,
        track=not no_track,
        evaluate=not no_eval,
    )
    keys = ["global_step", "train_seconds", "step_seconds", "train_reward_first_quarter", "train_reward_last_quarter"]
    keys += ["reward_judge_failures", "init_welfare", "heldout_welfare", "welfare_gain", "heldout_strict_valid"]
    _summary(f"RL ({result.variant})", result.metrics, keys, result.path)


@train_app.command("all")
def all_(
    variant: Annotated[
        list[str] | None, typer.Option(help="RL variant(s), repeatable (default: params rl.variant)")
    ] = None,
    root: Annotated[Path, ROOT_OPTION] = Path("."),
    params: Annotated[Path | None, PARAMS_OPTION] = None,
    preset: Annotated[list[Path] | None, PRESET_OPTION] = None,
    set_: Annotated[list[str] | None, SET_OPTION] = None,
    no_track: Annotated[bool, NO_TRACK_OPTION] = False,
) -> None:
    """base -> sft -> rl for each variant: the demo's training stages, in order."""
    from rich.console import Console

    console = Console(stderr=True)
    steps = 2 + len(variant or [None])
    console.rule(f"1/{steps} base model")
    base(root, params, preset, set_, no_track)
    console.rule(f"2/{steps} SFT warm start")
    sft(root, params, preset, set_, no_track, False)
    for i, v in enumerate(variant or [None], start=3):
        console.rule(f"{i}/{steps} welfare-reward RL ({v or 'params rl.variant'})")
        rl(v, root, params, preset, set_, no_track, False)


if __name__ == "__main__":
    train_app()
