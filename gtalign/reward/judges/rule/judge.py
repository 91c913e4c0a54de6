"""`RuleJudge`: the per-source adapters that read a request's label and call the family's pure rule."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gtalign.reward.judges.base import JudgeRequest, JudgeVerdict
from gtalign.reward.judges.prompts import PARETO_SOURCE
from gtalign.reward.judges.rule.ambiguity import abg_coqa_label, ambig_qa_label, ambiguity_verdict
from gtalign.reward.judges.rule.maths import MATH_TIMEOUT_S, GoldParseError, math_verdict
from gtalign.reward.judges.rule.pareto import pareto_verdict
from gtalign.reward.judges.rule.safety import safety_verdict
from gtalign.reward.judges.rule.writing import MEDIUM_BINS, medium_verdict, prior_assistant_turns
from gtalign.sources import SOURCES


@dataclass(frozen=True, slots=True)
class _Family:
    name: str
    fn: Callable[[RuleJudge, JudgeRequest], float]


class RuleJudge:
    """Offline, deterministic `Judge`: per-source rules (a module per family), one verdict per request, never raising.

    `minerva_rel_tol` is minerva's numeric tolerance (math-hard is exact); `math_timeout_s` math-verify's timeout on
    the main thread; `medium_bins` the similarity bin bounds; `medium_clarify_first` / `medium_clarify_later` the
    rating of a clarifying question on the first / a later turn.
    """

    name = "rule"

    def __init__(
        self,
        *,
        minerva_rel_tol: float = 0.01,
        math_timeout_s: int = MATH_TIMEOUT_S,
        medium_bins: Sequence[float] = MEDIUM_BINS,
        medium_clarify_first: float = 3.0,
        medium_clarify_later: float = 2.0,
    ) -> None:
        if list(medium_bins) != sorted(medium_bins) or len(medium_bins) != 4:
            raise ValueError(f"medium_bins must be 4 ascending bounds, got {medium_bins!r}")
        if int(math_timeout_s) < 1:
            raise ValueError(f"math_timeout_s must be a whole number of seconds >= 1, got {math_timeout_s!r}")
        self.minerva_rel_tol = float(minerva_rel_tol)
        self.math_timeout_s = int(math_timeout_s)
        self.medium_bins = tuple(float(b) for b in medium_bins)
        self.medium_clarify_first = float(medium_clarify_first)
        self.medium_clarify_later = float(medium_clarify_later)

    def judge(self, requests: Sequence[JudgeRequest]) -> list[JudgeVerdict]:
        return [self.judge_one(r) for r in requests]

    def judge_one(self, request: JudgeRequest) -> JudgeVerdict:
        """One verdict; every failure becomes `JudgeVerdict(None, reason)` naming the source."""
        family = _FAMILIES.get(request.source)
        if family is None:
            return JudgeVerdict(None, f"rule judge: no rule for data source {request.source!r}")
        if not isinstance(request.response, str):
            return JudgeVerdict(None, f"rule judge ({request.source}): response must be str")
        try:
            return JudgeVerdict(float(family.fn(self, request)))
        except GoldParseError as e:
            return JudgeVerdict(None, f"rule judge ({request.source}): {e}")
        except Exception as e:  # a single bad request must not sink the batch
            return JudgeVerdict(None, f"rule judge ({request.source}, {family.name}): {type(e).__name__}: {e}")

    # one small adapter per family: pull the label out of the request, call the pure rule

    def _math(self, r: JudgeRequest) -> float:
        return math_verdict(r.response, _require_text(r.ground_truth, "ground_truth"), timeout_s=self.math_timeout_s)

    def _minerva(self, r: JudgeRequest) -> float:
        gold = _require_text(r.ground_truth, "ground_truth")
        return math_verdict(r.response, gold, rel_tol=self.minerva_rel_tol, timeout_s=self.math_timeout_s)

    def _wildguard(self, r: JudgeRequest) -> float:
        label = _require_text(r.ground_truth, "ground_truth").strip().lower()
        if label not in ("harmful", "unharmful"):
            raise ValueError(f"wildguard ground_truth must be 'harmful' or 'unharmful', got {label[:40]!r}")
        return safety_verdict(r.response, harmful=label == "harmful")

    def _advbench(self, r: JudgeRequest) -> float:
        target = r.ground_truth if isinstance(r.ground_truth, str) else None
        return safety_verdict(r.response, harmful=True, target=target)

    def _ambig_qa(self, r: JudgeRequest) -> float:
        return ambiguity_verdict(r.response, ambig_qa_label(_require_text(r.ground_truth, "ground_truth")))

    def _abg_coqa(self, r: JudgeRequest) -> float:
        gt = r.ground_truth if isinstance(r.ground_truth, str) else ""
        return ambiguity_verdict(r.response, abg_coqa_label(gt, r.extra_info))

    def _medium(self, r: JudgeRequest) -> float:
        return medium_verdict(
            r.response,
            _require_text(r.ground_truth, "ground_truth"),
            prior_assistant_turns=prior_assistant_turns(r.extra_info),
            bins=self.medium_bins,
            clarify_first=self.medium_clarify_first,
            clarify_later=self.medium_clarify_later,
        )

    def _pareto(self, r: JudgeRequest) -> float:
        frontier = r.extra_info.get("pareto_frontiers") if isinstance(r.extra_info, Mapping) else None
        if frontier is None or isinstance(frontier, str | bytes):
            raise ValueError("extra_info['pareto_frontiers'] must be a list of cell keys such as 'DQ_AQ'")
        keys = [str(k) for k in frontier]
        if not keys:
            raise ValueError("extra_info['pareto_frontiers'] is empty")
        return pareto_verdict(r.response, keys)


def _require_text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r:.60}")
    return value


# One adapter per source (they read the label differently); the family, named in error messages, is the registry's.
_ADAPTERS: dict[str, Callable[[RuleJudge, JudgeRequest], float]] = {
    "math-hard": RuleJudge._math,
    "minerva": RuleJudge._minerva,
    "medium": RuleJudge._medium,
    "wildguard": RuleJudge._wildguard,
    "advbench": RuleJudge._advbench,
    "ambig_qa": RuleJudge._ambig_qa,
    "abg-coqa": RuleJudge._abg_coqa,
}
_FAMILIES: dict[str, _Family] = {s: _Family(SOURCES[s].family.name, fn) for s, fn in _ADAPTERS.items()} | {
    PARETO_SOURCE: _Family("pareto", RuleJudge._pareto)
}
#: The data sources this judge has rules for.
RULE_SOURCES: tuple[str, ...] = tuple(_FAMILIES)
