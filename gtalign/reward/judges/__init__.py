"""Judges: `column` (recorded verdicts), `rule` (offline heuristics and math-verify), `openai` (a served model)."""

from __future__ import annotations

from typing import Any

from gtalign.reward.judges.base import Judge, JudgeRequest, JudgeVerdict
from gtalign.reward.judges.column import ColumnJudge

JUDGES = ("column", "rule", "openai")


def make_judge(kind: str, **options: Any) -> Judge:
    """Build a judge by name; the rule and openai judges are imported only when built."""
    if kind == "column":
        return ColumnJudge()
    if kind == "rule":
        from gtalign.reward.judges.rule import RuleJudge  # local: math-verify and sympy take ~0.7 s to import

        return RuleJudge(**options)
    if kind == "openai":
        from gtalign.reward.judges.openai import OpenAIJudge, OpenAIJudgeConfig  # local: the openai SDK, ~1.2 s

        return OpenAIJudge(OpenAIJudgeConfig(**options))
    raise ValueError(f"unknown judge {kind!r}; expected one of {', '.join(JUDGES)}")


__all__ = ["JUDGES", "Judge", "JudgeRequest", "JudgeVerdict", "make_judge"]
