"""`gtalign reward score`: score a JSONL of completions with the welfare reward (the same reward RL trains on)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import Progress

from gtalign.cli.render import print_rows
from gtalign.cli.support import cli_params, fail
from gtalign.reward.config import RewardConfig
from gtalign.reward.io import ScoreSummary, score_jsonl
from gtalign.reward.judges import JUDGES, Judge, make_judge

reward_app = typer.Typer(help="The welfare reward.", no_args_is_help=True)


@reward_app.command("score")
def reward_score(
    input_path: Annotated[
        Path,
        typer.Argument(
            metavar="IN.jsonl",
            help="rows: completion, data_source, ground_truth, optional judge_score and extra_info ('-' = stdin)",
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="one JSON line per input line ('-' = stdout)")],
    judge: Annotated[str, typer.Option(help="column | rule | openai")] = "column",
    aggregation: Annotated[
        str | None,
        typer.Option(help="cobb_douglas | linear | user | llm | ces (default: params.yaml, else cobb_douglas)"),
    ] = None,
    params: Annotated[
        Path | None,
        typer.Option(
            help="params.yaml whose `reward:` section configures the reward (default: ./params.yaml when present)"
        ),
    ] = None,
    judge_base_url: Annotated[str | None, typer.Option(help="openai judge: base URL of the endpoint")] = None,
    judge_model: Annotated[str | None, typer.Option(help="openai judge: model name")] = None,
    max_judge_failure_rate: Annotated[float, typer.Option(help="exit 3 when judge failures exceed this share")] = 0.05,
    chunk_size: Annotated[int, typer.Option(min=1, help="rows per judge batch")] = 1024,
) -> None:
    """Score completions with the welfare reward; a summary goes to stderr."""
    if judge not in JUDGES:
        raise fail(f"--judge must be one of {', '.join(JUDGES)}, got {judge!r}")
    p = cli_params(Path("."), params, optional=True)
    try:
        cfg = p.reward.config(aggregation=aggregation)
    except ValueError as e:
        raise fail(f"params.yaml: reward: {e}") from None
    judge_opts = p.reward.judge.of(judge)
    if judge == "openai":
        judge_opts.update({k: v for k, v in {"base_url": judge_base_url, "model": judge_model}.items() if v})
    try:
        the_judge = make_judge(judge, **judge_opts)
    except (TypeError, ValueError) as e:
        raise fail(f"cannot build the {judge} judge: {e}") from None

    if str(input_path) != "-" and not input_path.is_file():
        raise fail(f"{input_path}: no such input file")
    src = sys.stdin if str(input_path) == "-" else input_path.open(encoding="utf-8", errors="replace")
    dst = sys.stdout if str(output) == "-" else output.open("w", encoding="utf-8")
    total = None if src is sys.stdin else sum(1 for _ in input_path.open("rb"))
    try:
        summary = _score_with_progress(src, dst, the_judge, cfg, chunk_size, total)
    finally:
        if src is not sys.stdin:
            src.close()
        if dst is not sys.stdout:
            dst.close()
    _print_summary(summary, judge, cfg.aggregation, getattr(the_judge, "stats", None))
    if summary.rows and summary.judge_failures / summary.rows > max_judge_failure_rate:
        raise fail(
            f"judge failures {summary.judge_failures}/{summary.rows} exceed --max-judge-failure-rate "
            f"{max_judge_failure_rate}",
            code=3,
        )


def _score_with_progress(
    src: IO[str], dst: IO[str], judge: Judge, cfg: RewardConfig, chunk_size: int, total: int | None
) -> ScoreSummary:
    """A progress bar only for inputs long enough to wait on."""
    if total is None or total < 5000:
        return score_jsonl(src, dst, judge, cfg, chunk_size=chunk_size)
    with Progress(transient=True) as progress:
        task = progress.add_task("scoring", total=total)
        return score_jsonl(
            src, dst, judge, cfg, chunk_size=chunk_size, on_progress=lambda n: progress.advance(task, n)
        )


def _print_summary(summary: ScoreSummary, judge: str, aggregation: str, judge_stats: Any) -> None:
    rows = [("rows", str(summary.rows)), ("scored", str(summary.scored)), ("mean score", f"{summary.mean_score:.4f}")]
    rows += [(f"rows · {source}", str(n)) for source, n in sorted(summary.by_source.items())]
    rows += [(escape(f"error: {reason}"), str(n)) for reason, n in summary.errors.most_common()]
    if judge_stats:
        rows.append(("judge stats", escape(str(judge_stats))))
    print_rows(f"reward ({aggregation}, judge={judge})", rows)
