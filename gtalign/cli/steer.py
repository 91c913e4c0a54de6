"""`gtalign steer ...`: pricing steering, i.e. the policy's answers when the payoff matrix is edited at </payoff>."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from gtalign.cli.options import Model, ParamsFile, RootTracked, TrackingUri
from gtalign.cli.support import cli_params, exit_on, fail, set_threads
from gtalign.evaluate.steering import steering_eval_stage
from gtalign.steering import expected_words_from_completions

steer_app = typer.Typer(
    help="Pricing steering: edit the payoff matrix at </payoff> and continue.", no_args_is_help=True
)


@steer_app.command("eval")
def steer_eval(
    model: Model = None,
    root: RootTracked = Path("."),
    params: ParamsFile = None,
    per_source: Annotated[int | None, typer.Option(help="test prompts per source (default: steering.eval)")] = None,
    analyze: Annotated[
        list[str] | None,
        typer.Option(
            "--analyze",
            help="who writes <analyze> when steered: model | solver (labels solver/<mode>), repeatable for both "
            "side by side (default: steering.eval.analyze_modes)",
        ),
    ] = None,
    out_dir: Annotated[Path | None, typer.Option(help="report folder (default: artifacts/steering)")] = None,
    tracking_uri: TrackingUri = None,
    no_track: Annotated[bool, typer.Option("--no-track", help="skip the MLflow run")] = False,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads (1 is fastest on a busy machine)")] = None,
) -> None:
    """Steer held-out prompts under every pricing mode; write the report section, metrics JSON and an MLflow run."""
    set_threads(threads)
    with exit_on(FileNotFoundError, ValueError):
        result = steering_eval_stage(
            root.resolve(),
            cli_params(root, params, optional=True),
            model=model,
            per_source=per_source,
            analyze_modes=analyze,
            out_dir=out_dir,
            tracking_uri=tracking_uri,
            track=not no_track,
        )
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
    if not demonstrations.is_file():
        raise fail(f"{demonstrations}: no such file (run `gtalign data demonstrations` first)", code=1)
    typer.echo(json.dumps(expected_words_from_completions(_completion_texts(demonstrations)), indent=2))


def _completion_texts(path: Path) -> Iterator[str]:
    """The last message of each line's `completion` (a chat list), or the completion itself (text)."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            completion = json.loads(line).get("completion")
            yield completion[-1]["content"] if isinstance(completion, list) else str(completion)
