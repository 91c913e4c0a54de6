"""`gtalign train ...`: base model, SFT warm start, welfare-reward RL.

Each command runs one `gtalign.train.stages` function with params.yaml, optionally overlaid by a preset
(`--preset configs/train/qwen2.5-3b.yaml`) and `--set section.key=value` overrides. TRL shows its own progress bar;
the summary goes to stderr. Runs under `accelerate launch -m gtalign.cli train ...` as well: only rank 0 prints.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from gtalign.cli.options import ParamsFile, Presets, Root, Sets
from gtalign.cli.render import metric_rows, print_rows
from gtalign.cli.support import cli_params, exit_on
from gtalign.train.common import is_main_process
from gtalign.train.stages import base_model_stage, rl_stage, sft_stage

train_app = typer.Typer(help="Training: base model, SFT warm start, welfare-reward RL (GRPO).", no_args_is_help=True)

NoTrack = Annotated[bool, typer.Option("--no-track", help="skip MLflow tracking")]
NoEval = Annotated[bool, typer.Option("--no-eval", help="skip the held-out evaluation")]
TRAIN_ERRORS = (FileNotFoundError, ValidationError, ValueError)
R = TypeVar("R")
SFT_KEYS = ["global_step", "loss_first", "loss_final", "train_seconds", "train_tokens_per_second"]
SFT_KEYS += ["init_strict_valid", "heldout_strict_valid", "init_welfare", "heldout_welfare", "eval_seconds"]
RL_KEYS = ["global_step", "train_seconds", "step_seconds", "train_reward_first_quarter", "train_reward_last_quarter"]
RL_KEYS += ["reward_judge_failures", "init_welfare", "heldout_welfare", "welfare_gain", "heldout_strict_valid"]


def _run(
    stage: Callable[..., R],
    root: Path,
    params: Path | None,
    presets: list[Path] | None,
    sets: list[str] | None,
    *args: Any,
    **kw: Any,
) -> R:
    """`stage(root, params, *args, **kw)` with params.yaml, presets and overrides read; a failure exits 1."""
    p = cli_params(root, params, presets=presets, sets=sets)
    with exit_on(*TRAIN_ERRORS):
        return stage(root.resolve(), p, *args, **kw)


def _summary(title: str, metrics: dict[str, float], keys: list[str], path: Path) -> None:
    if is_main_process():
        print_rows(title, [("output", str(path)), *metric_rows(metrics, keys)])


@train_app.command("base")
def base(
    root: Root = Path("."),
    params: ParamsFile = None,
    preset: Presets = None,
    set_: Sets = None,
    no_track: NoTrack = False,
) -> None:
    """Build the base model (tiny: tokenizer trained on curated text + demonstrations) -> artifacts/models/base."""
    result = _run(base_model_stage, root, params, preset, set_, track=not no_track)
    _summary(f"base model ({result.kind})", result.metrics, list(result.metrics), result.path)


@train_app.command("sft")
def sft(
    root: Root = Path("."),
    params: ParamsFile = None,
    preset: Presets = None,
    set_: Sets = None,
    no_track: NoTrack = False,
    no_eval: NoEval = False,
) -> None:
    """SFT warm start on the demonstrations -> artifacts/models/sft (resumes a killed run from its last checkpoint)."""
    result = _run(sft_stage, root, params, preset, set_, track=not no_track, evaluate=not no_eval)
    _summary("SFT", result.metrics, SFT_KEYS, result.path)


@train_app.command("rl")
def rl(
    variant: Annotated[
        str | None,
        typer.Option(
            help="cobb_douglas (GTAlign) | user | llm | linear | ces | a name in rl.variants (default: rl.variant)"
        ),
    ] = None,
    root: Root = Path("."),
    params: ParamsFile = None,
    preset: Presets = None,
    set_: Sets = None,
    no_track: NoTrack = False,
    no_eval: NoEval = False,
) -> None:
    """Welfare-reward GRPO -> artifacts/models/rl-<variant> (resumes a killed run from its last checkpoint)."""
    result = _run(rl_stage, root, params, preset, set_, variant, track=not no_track, evaluate=not no_eval)
    _summary(f"RL ({result.variant})", result.metrics, RL_KEYS, result.path)


@train_app.command("all")
def all_(
    variant: Annotated[
        list[str] | None, typer.Option(help="RL variant(s), repeatable (default: params rl.variant)")
    ] = None,
    root: Root = Path("."),
    params: ParamsFile = None,
    preset: Presets = None,
    set_: Sets = None,
    no_track: NoTrack = False,
) -> None:
    """base -> sft -> rl for each variant: the demo's training stages, in order."""
    console = Console(stderr=True)
    steps = 2 + len(variant or [None])
    console.rule(f"1/{steps} base model")
    base(root, params, preset, set_, no_track)
    console.rule(f"2/{steps} SFT warm start")
    sft(root, params, preset, set_, no_track, False)
    for i, v in enumerate(variant or [None], start=3):
        console.rule(f"{i}/{steps} welfare-reward RL ({v or 'params rl.variant'})")
        rl(v, root, params, preset, set_, no_track, False)
