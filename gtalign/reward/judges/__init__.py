"""Judges: `column` (recorded verdicts), `rule` (offline heuristics and math-verify), `openai` (a served model)."""

from __future__ import annotations

from typing import Any

from gtalign.reward.judges.base import Judge, JudgeRequest, JudgeVerdict

JUDGES = ("column", "rule", "openai")


def make_judge(kind: str, **options: Any) -> Judge:
    """Build a judge by name; imports lazily so the recorded-verdict path stays light."""
    if kind == "column":
        from gtalign.reward.judges.column import ColumnJudge

        return ColumnJudge()
    if kind == "rule":
        from gtalign.reward.judges.rule import RuleJudge

        return RuleJudge(**options)
    if kind == "openai":
        from gtalign.reward.judges.openai import OpenAIJudge, OpenAIJudgeConfig

        return OpenAIJudge(OpenAIJudgeConfig(**options))
    raise ValueError(f"unknown judge {kind!r}; expected one of {', '.join(JUDGES)}")


__all__ = ["JUDGES", "Judge", "JudgeRequest", "JudgeVerdict", "make_judge"]
