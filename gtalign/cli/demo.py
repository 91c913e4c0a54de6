"""`gtalign demo`: the whole pipeline, raw data to a promoted model and a report, with a summary at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from gtalign.cli.options import ParamsFile, Root
from gtalign.cli.render import print_rows
from gtalign.cli.support import cli_params
from gtalign.pipeline import run_pipeline


def demo(
    root: Root = Path("."),
    params: ParamsFile = None,
    preset: Annotated[
        list[Path] | None,
        typer.Option("--preset", help="YAML overlaid on params.yaml (e.g. configs/presets/paper.yaml)"),
    ] = None,
) -> None:
    """The main job: raw data to a promoted model and an evaluation report (tiny CPU preset by default)."""
    console = Console(stderr=True)
    summary = run_pipeline(root, cli_params(root, params, presets=preset), log=lambda msg: console.rule(msg))
    rows = [(f"time · {step}", f"{seconds:.0f} s") for step, seconds in summary.seconds.items()]
    rows += [(f"welfare · {key.split('/')[0]}", f"{value:.4f}") for key, value in sorted(summary.headline.items())]
    for d in summary.directions:
        verdict = "holds" if d.holds else "DOES NOT HOLD"
        rows.append((f"direction · {d.name}", f"{verdict} ({d.value:.4f} vs {d.reference:.4f})"))
    if summary.release:
        champion = f"champion v{summary.champion}" if summary.champion else "no champion"
        rows.append(("registry", f"{summary.release.decision.name}: {champion}"))
        rows += [("", line) for line in summary.release.lines()]
    rows.append(("report", str(summary.report)))
    rows.append(("dvc", summary.dvc))
    print_rows("gtalign demo", rows, fold_values=True)
    console.print(f"report: {summary.report}", soft_wrap=True)  # one unbroken line to copy, whatever the width
