"""Replays recorded verdicts: the row's `judge_score` is the number the judge would have replied.

This makes rewards reproducible from logs and lets the published reward be checked against ours for identical
verdicts. A row without a usable number is a counted judge failure, never a zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from gtalign.reward.judges.base import JudgeRequest, JudgeVerdict


class ColumnJudge:
    name = "column"

    def judge(self, requests: Sequence[JudgeRequest]) -> list[JudgeVerdict]:
        return [self._one(r) for r in requests]

    @staticmethod
    def _one(r: JudgeRequest) -> JudgeVerdict:
        v = r.recorded
        if v is None:
            return JudgeVerdict(None, "missing judge_score (the column judge replays recorded verdicts)")
        if isinstance(v, bool) or not isinstance(v, int | float):
            return JudgeVerdict(None, f"judge_score must be a number, got {v!r}")
        if not math.isfinite(v):
            return JudgeVerdict(None, f"judge_score is not finite: {v!r}")
        return JudgeVerdict(v)
