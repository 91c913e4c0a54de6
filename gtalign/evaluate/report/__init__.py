"""The evaluation report: the paper's Tables 3-7 in its layout, our numbers beside the published ones, and plots.

`write_report` writes, under one folder (normally `artifacts/report/`):

* `report.md` and `report.html` (the same content; HTML rendered with markdown-it, plots embedded by relative path),
  from `markdown`;
* PNG plots, from `plots`;
* CSVs for `dvc plots` (`metrics.csv`, `points.csv`, `actions.csv`, `pareto.csv`, `counts.csv`), from `csvs`;

and returns a `Report` (markdown + plot paths + every file) for the Dagster asset's metadata and MLflow artifacts.
`flat_metrics` gives the numbers for `artifacts/metrics/evaluation.json` (`dvc metrics`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gtalign.evaluate.metrics import ModelEvaluation
from gtalign.evaluate.paper import PaperResults
from gtalign.evaluate.pareto import PairwiseComparison
from gtalign.evaluate.report.csvs import flat_metrics, write_csvs
from gtalign.evaluate.report.markdown import markdown_to_html, render_markdown
from gtalign.evaluate.report.plots import write_plots

__all__ = [
    "Report",
    "flat_metrics",
    "markdown_to_html",
    "render_markdown",
    "write_csvs",
    "write_plots",
    "write_report",
]


@dataclass
class Report:
    """What `write_report` produced: the markdown (also in report.md), the plots, and every file by name."""

    markdown: str
    plots: list[Path]
    files: dict[str, Path] = field(default_factory=dict)


def write_report(
    evals: Sequence[ModelEvaluation],
    comparisons: Sequence[PairwiseComparison],
    out_dir: Path,
    *,
    paper: PaperResults | None = None,
    paper_names: Mapping[str, str] | None = None,
    settings: Mapping[str, Any] | None = None,
    confidence: float = 0.95,
    plots: bool = True,
    extra_sections: Sequence[str] = (),
) -> Report:
    """Write report.md, report.html, the PNG plots and the CSVs into `out_dir`; return the markdown and paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = write_plots(evals, out_dir) if plots and evals else []
    md = render_markdown(
        evals,
        comparisons,
        paper=paper,
        paper_names=paper_names,
        plots=pngs,
        settings=settings,
        confidence=confidence,
        extra_sections=extra_sections,
    )
    files = {"report_md": out_dir / "report.md", "report_html": out_dir / "report.html"}
    files["report_md"].write_text(md, encoding="utf-8")
    files["report_html"].write_text(markdown_to_html(md), encoding="utf-8")
    files.update(write_csvs(evals, comparisons, out_dir))
    files.update({p.stem: p for p in pngs})
    return Report(md, pngs, files)
