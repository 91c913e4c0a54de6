"""Evaluation: generation on the held-out sets and every metric of the paper's Tables 3-7, report and plots
(docs/architecture.md lists the modules). Importing this package imports nothing heavy: the names below load their
module on first use.
"""

import importlib
from typing import Any

# Resolved on first use (PEP 562), so that `gtalign eval --help` and the other sub-commands of the CLI do not pay
# for pandas and the scoring stack at start-up.
_EXPORTS = {
    "Generation": "generate",
    "GenerationMismatchError": "generate",
    "generate_resumable": "generate",
    "load_generations": "generate",
    "METRICS": "metrics",
    "Estimate": "metrics",
    "ModelEvaluation": "metrics",
    "ScoredRow": "metrics",
    "SourceEvaluation": "metrics",
    "evaluate_model": "metrics",
    "score_generations": "metrics",
    "PaperResults": "paper",
    "load_paper_results": "paper",
    "PairwiseComparison": "pareto",
    "compare": "pareto",
    "Report": "report",
    "write_report": "report",
    "EvaluateConfig": "config",
    "EvaluateResult": "stages",
    "evaluate_stage": "stages",
    "report_stage": "stages",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gtalign.evaluate' has no attribute {name!r}")
    return getattr(importlib.import_module(f"gtalign.evaluate.{_EXPORTS[name]}"), name)


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
