"""What the report's tables show: which sources and metrics, in the paper's order, under the paper's names.

Names come from the source registry (`gtalign.sources`); a source it does not know is shown by its own name.
"""

from __future__ import annotations

from collections.abc import Sequence

from gtalign.evaluate.metrics import ModelEvaluation
from gtalign.sources import SOURCES

T3_SOURCES = ("wildguard", "medium", "math-hard", "ambig_qa")
T3_METRICS = ("format", "answer", "ans_per_token", "rt", "total_len")
T4_COLUMNS = {
    "wildguard": ("safe_alt", "helpful_ans", "total_acc", "f1"),
    "ambig_qa": ("helpful_ans", "ambig_handle", "total_acc", "f1"),
}
T4_OOD_COLUMNS = {
    "advbench": ("safe_alt", "harmful_refused", "harmful_complied", "total_acc"),
    "abg-coqa": ("helpful_ans", "ambig_handle", "total_acc", "f1"),
}
T5_SOURCES = ("math-hard", "medium", "ambig_qa", "wildguard")
T7_OOD = ("minerva", "advbench", "abg-coqa")
T7_MATRIX = ("math-hard", "medium", "ambig_qa", "wildguard")
#: Every source in the order of the paper's tables: Table 5's in-domain columns, then Table 7's out-of-domain ones.
PAPER_ORDER: tuple[str, ...] = (*T5_SOURCES, *T7_OOD)
PAPER_TABLE_ORDER = ("qwen3-32b", "qwen2.5-3b", "sft", "linear", "llm_reward", "user_reward", "gtalign")


def source_name(source: str) -> str:
    """The paper's name of a source (`Ambig-QA` for `ambig_qa`), or the source itself when unknown."""
    spec = SOURCES.get(source)
    return source if spec is None else spec.display_name


def evaluated_sources(evals: Sequence[ModelEvaluation]) -> list[str]:
    """The sources any model was evaluated on: the paper's order first, unknown sources after, sorted."""
    seen = {s for ev in evals for s in ev.sources}
    return [s for s in PAPER_ORDER if s in seen] + sorted(seen - set(PAPER_ORDER))
