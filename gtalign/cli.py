"""`gtalign` command line. Sub-commands import their heavy dependencies lazily so that each starts fast."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from gtalign.cli_support import cli_params, fail, parsed

app = typer.Typer(help="GTAlign: game-theoretic alignment of LLM assistants for social welfare.", no_args_is_help=True)
reward_app = typer.Typer(help="The welfare reward.", no_args_is_help=True)
data_app = typer.Typer(help="Raw data, curation, validation and demonstrations.", no_args_is_help=True)
app.add_typer(reward_app, name="reward")
app.add_typer(data_app, name="data")


def _mount_subapps() -> None:
    """Sub-apps live beside their library code; each imports its heavy dependencies lazily."""
    from gtalign.evaluate.cli import eval_app
    from gtalign.registry_cli import registry_app
    from gtalign.steering_cli import serve, steer_app
    from gtalign.train.cli import train_app

    app.add_typer(eval_app, name="eval")
    app.add_typer(registry_app, name="registry")
    app.add_typer(steer_app, name="steer")
    app.add_typer(train_app, name="train")
    app.command("serve")(serve)


_mount_subapps()

ROOT_OPTION = typer.Option("--root", help="repo root (where params.yaml, data/ and artifacts/ live)")
PARAMS_OPTION = typer.Option("--params", help="params file (default: <root>/params.yaml)")


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
    from gtalign.config import ParamsError, load_params, reward_config, section
    from gtalign.reward.judges import JUDGES, make_judge

    if judge not in JUDGES:
        raise fail(f"--judge must be one of {', '.join(JUDGES)}, got {judge!r}")
    try:
        params_path = params or (Path("params.yaml") if Path("params.yaml").exists() else None)
        p = load_params(params_path) if params_path else {}
        cfg = reward_config(p, aggregation=aggregation)
        judge_opts = dict(section(section(p, "reward"), "judge").get(judge) or {})
    except (ParamsError, ValueError) as e:
        raise fail(str(e)) from None
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
        summary = _run_with_progress(src, dst, the_judge, cfg, chunk_size, total)
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


def _run_with_progress(src, dst, judge, cfg, chunk_size: int, total: int | None):
    from gtalign.reward.io import score_jsonl

    if total is None or total < 5000:
        return score_jsonl(src, dst, judge, cfg, chunk_size=chunk_size)
    from rich.progress import Progress

    with Progress(transient=True) as progress:
        task = progress.add_task("scoring", total=total)
        return score_jsonl(
            src, dst, judge, cfg, chunk_size=chunk_size, on_progress=lambda n: progress.advance(task, n)
        )


def _print_summary(summary, judge: str, aggregation: str, judge_stats) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(stderr=True)
    table = Table(title=f"reward ({aggregation}, judge={judge})", show_header=False)
    table.add_row("rows", str(summary.rows))
    table.add_row("scored", str(summary.scored))
    table.add_row("mean score", f"{summary.mean_score:.4f}")
    for source, n in sorted(summary.by_source.items()):
        table.add_row(f"rows · {source}", str(n))
    for reason, n in summary.errors.most_common():
        table.add_row(escape(f"error: {reason}"), str(n))
    if judge_stats:
        table.add_row("judge stats", escape(str(judge_stats)))
    console.print(table)


def _run_stage(name: str, root: Path, params: Path | None):
    """Run a library stage, turning its expected failures into one clear message and exit code 1."""
    from gtalign.data import DataPullError, DataValidationError, RawDataMissingError, stages

    fn = {
        "curate": stages.curate_stage,
        "demonstrations": stages.demonstrations_stage,
        "teacher_eval": stages.teacher_eval_stage,
    }[name]
    try:
        return fn(root.resolve(), parsed(cli_params(root, params)))
    except (RawDataMissingError, DataPullError, DataValidationError, FileNotFoundError) as e:
        raise fail(f"{name}: {e}", code=1) from None


@data_app.command("pull")
def data_pull(root: Annotated[Path, ROOT_OPTION] = Path(".")) -> None:
    """`dvc pull` the raw GTAlign sets into data/ (the remote is ../shared/gtalign-data/dvc-store by default)."""
    from gtalign.data import DataPullError, pull_data

    try:
        path = pull_data(root.resolve())
    except DataPullError as e:
        raise fail(str(e), code=1) from None
    typer.echo(f"data ready in {path}")


@data_app.command("curate")
def data_curate(
    root: Annotated[Path, ROOT_OPTION] = Path("."), params: Annotated[Path | None, PARAMS_OPTION] = None
) -> None:
    """Curate and validate the raw sets into artifacts/curated (stops with a report on a failed expectation)."""
    result = _run_stage("curate", root, params)
    typer.echo(result.report.to_markdown())
    typer.echo(f"validation: {result.validation.n_expectations} expectations passed; wrote {result.paths['data']}")


@data_app.command("demonstrations")
def data_demonstrations(
    root: Annotated[Path, ROOT_OPTION] = Path("."), params: Annotated[Path | None, PARAMS_OPTION] = None
) -> None:
    """Write the SFT demonstrations (rule teacher) and report their welfare."""
    result = _run_stage("demonstrations", root, params)
    typer.echo(result.summary.to_markdown(f"{result.count} demonstrations in {result.path}"))


@app.command("teacher-eval")
def teacher_eval(
    root: Annotated[Path, ROOT_OPTION] = Path("."), params: Annotated[Path | None, PARAMS_OPTION] = None
) -> None:
    """Score the rule teacher on a sample of every test set with the rule judges."""
    result = _run_stage("teacher_eval", root, params)
    typer.echo(result.summary.to_markdown(f"Rule teacher on the test sets ({result.path})"))


@app.command("demo")
def demo(
    root: Annotated[Path, ROOT_OPTION] = Path("."),
    params: Annotated[Path | None, PARAMS_OPTION] = None,
    preset: Annotated[
        list[Path] | None,
        typer.Option("--preset", help="YAML overlaid on params.yaml (e.g. configs/presets/paper.yaml)"),
    ] = None,
) -> None:
    """The main job: raw data to a promoted model and an evaluation report (tiny CPU preset by default)."""
    from rich.console import Console
    from rich.table import Table

    from gtalign.pipeline import run_pipeline

    console = Console(stderr=True)
    p = parsed(cli_params(root, params, presets=preset))
    summary = run_pipeline(root, p, log=lambda msg: console.rule(msg))
    table = Table(title="gtalign demo", show_header=False)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")  # the report's path is printed whole, however narrow the terminal
    for step, seconds in summary.seconds.items():
        table.add_row(f"time · {step}", f"{seconds:.0f} s")
    for key, value in sorted(summary.headline.items()):
        table.add_row(f"welfare · {key.split('/')[0]}", f"{value:.4f}")
    for d in summary.directions:
        verdict = "holds" if d.holds else "DOES NOT HOLD"
        table.add_row(f"direction · {d.name}", f"{verdict} ({d.value:.4f} vs {d.reference:.4f})")
    decision = summary.decision
    table.add_row(
        "registry", f"{decision.name} v{decision.version}: {decision.decision}; champion v{summary.champion}"
    )
    for reason in decision.reasons:
        table.add_row("", reason)
    table.add_row("report", str(summary.report))
    console.print(table)
    console.print(f"report: {summary.report}", soft_wrap=True)  # one unbroken line to copy, whatever the width


if __name__ == "__main__":
    app()
