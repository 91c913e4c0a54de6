"""Evaluation: generation on the held-out sets and every metric of the paper's Tables 3-7, report and plots.

    generate.py   resumable, batched generation; saved records (`Generation`) recompute metrics without the model
    metrics.py    scoring through the RL reward (`score_batch`), Tables 3/4/5/7 per source, bootstrap intervals,
                  action mix, failure counts
    pareto.py     App. C.1 Pareto metrics (coverage, hypervolume, regret, dominance) as pure functions
    paper.py      the paper's published numbers (gtalign/resources/paper_results.json)
    report.py     report.md / report.html, PNG plots, CSVs for `dvc plots`, flat numbers for `dvc metrics`
    stages.py     `evaluate_stage` / `report_stage` (params `evaluate:`), one MLflow run per model
    cli.py        `gtalign eval run|report` (typer sub-app `eval_app`)

Importing this package does not import torch or matplotlib.
"""

from gtalign.evaluate.generate import Generation, GenerationMismatchError, generate_resumable, load_generations
from gtalign.evaluate.metrics import (
    METRICS,
    Estimate,
    ModelEvaluation,
    ScoredRow,
    SourceEvaluation,
    evaluate_model,
    score_generations,
)
from gtalign.evaluate.paper import PaperResults, load_paper_results
from gtalign.evaluate.pareto import PairwiseComparison, compare
from gtalign.evaluate.report import Report, write_report
from gtalign.evaluate.stages import EvaluateConfig, EvaluateResult, evaluate_stage, report_stage

__all__ = [
    "METRICS",
    "Estimate",
    "EvaluateConfig",
    "EvaluateResult",
    "Generation",
    "GenerationMismatchError",
    "ModelEvaluation",
    "PairwiseComparison",
    "PaperResults",
    "Report",
    "ScoredRow",
    "SourceEvaluation",
    "compare",
    "evaluate_model",
    "evaluate_stage",
    "generate_resumable",
    "load_generations",
    "load_paper_results",
    "report_stage",
    "score_generations",
    "write_report",
]
