"""The one adapter between TRL's GRPO reward-function interface and `gtalign.reward.score_batch`.

Evaluation and RL must reward the same thing, so the adapter adds no reward logic of its own: it unpacks TRL's
arguments, calls `score_batch` once per generation batch, optionally normalises per source
(`gtalign.reward.normalize`), and hands TRL one float per completion -- `None` where the judge failed, which TRL
treats as a missing reward (NaN: left out of the group baseline, zero advantage), never as a zero. Everything else
a result carries (U, L, every component, judge failures, parse errors) is logged through TRL's `log_metric`, per
source, so it reaches the trainer's logs and MLflow next to TRL's own metrics.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gtalign.reward import RewardConfig, RewardInput, RewardResult, score_batch
from gtalign.reward.judges.base import Judge
from gtalign.reward.normalize import METHODS, normalize
from gtalign.reward.score import COMPONENTS


def completion_text(completion: Any) -> str:
    """TRL passes conversational completions as `[{"role": "assistant", "content": ...}]`, standard ones as str."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], Mapping):
        return str(completion[-1].get("content") or "")
    return str(completion)


def parse_extra_info(value: Any) -> dict[str, Any]:
    """extra_info travels as a JSON string (Arrow cannot hold a free-form dict column); accept a mapping too."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str) and value:
        try:
            parsed = json.loads(value)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


@dataclass
class RewardTotals:
    """Counts over the whole run (the per-step numbers go to `log_metric`)."""

    completions: int = 0
    judge_failures: int = 0
    format_errors: int = 0
    input_errors: int = 0

    @property
    def judge_failure_rate(self) -> float:
        return self.judge_failures / self.completions if self.completions else 0.0


@dataclass
class WelfareReward:
    """GRPO reward function: `score_batch` -> (normalised) welfare per completion, components via `log_metric`.

    `record=True` keeps every (completion, source, returned reward) so tests and benchmarks can check that what
    the trainer optimised is exactly what `score_batch` says.
    """

    judge: Judge
    cfg: RewardConfig = field(default_factory=RewardConfig)
    normalization: str = "none"
    record: bool = False
    max_judge_failure_rate: float | None = None
    min_rows_for_rate: int = 64
    totals: RewardTotals = field(default_factory=RewardTotals, init=False)
    history: list[dict[str, Any]] = field(default_factory=list, init=False)
    __name__ = "welfare"  # not a field: TRL names the metrics after the function (rewards/welfare/mean)

    def __post_init__(self) -> None:
        if self.normalization not in METHODS:
            raise ValueError(f"unknown normalisation {self.normalization!r}; expected one of {', '.join(METHODS)}")

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        data_source: Sequence[str],
        ground_truth: Sequence[str],
        extra_info: Sequence[Any] | None = None,
        log_metric: Callable[[str, float], None] | None = None,
        **_: Any,
    ) -> list[float | None]:
        texts = [completion_text(c) for c in completions]
        extras = [parse_extra_info(e) for e in (extra_info or [None] * len(texts))]
        rows = [
            RewardInput(t, str(s), str(g), e)
            for t, s, g, e in zip(texts, data_source, ground_truth, extras, strict=True)
        ]
        results = score_batch(rows, self.judge, self.cfg)
        scores = [r.score for r in results]
        rewards = scores if self.normalization == "none" else normalize(scores, list(data_source), self.normalization)
        self._account(results)
        if log_metric is not None:
            for name, value in batch_metrics(results, list(data_source)).items():
                log_metric(name, value)
        if self.record:
            self.history.extend(
                {
                    "completion": row.completion,
                    "data_source": row.data_source,
                    "ground_truth": row.ground_truth,
                    "extra_info": row.extra_info,
                    "score": sc,
                    "reward": rw,
                    "error": r.error,
                }
                for row, sc, rw, r in zip(rows, scores, rewards, results, strict=True)
            )
        self._check_failure_rate()
        return rewards

    def _account(self, results: Sequence[RewardResult]) -> None:
        t = self.totals
        t.completions += len(results)
        t.judge_failures += sum(1 for r in results if r.error_kind == "judge")
        t.format_errors += sum(1 for r in results if r.error_kind == "format")
        t.input_errors += sum(1 for r in results if r.error_kind == "input")

    def _check_failure_rate(self) -> None:
        """A judge that fails too often makes the reward meaningless: stop instead of training on noise."""
        t, limit = self.totals, self.max_judge_failure_rate
        if limit is not None and t.completions >= self.min_rows_for_rate and t.judge_failure_rate > limit:
            raise RuntimeError(
                f"judge failures {t.judge_failures}/{t.completions} ({t.judge_failure_rate:.1%}) exceed "
                f"rl.max_judge_failure_rate={limit}: check the judge (server up? cache? timeouts?)"
            )


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def batch_metrics(results: Sequence[RewardResult], sources: Sequence[str]) -> dict[str, float]:
    """welfare/{score,U,L,<component>}/{all,<source>} means over scored rows, plus error counts and rates.

    Counts are per generation batch; TRL averages `log_metric` values over a logging step.
    """
    groups: dict[str, list[RewardResult]] = defaultdict(list)
    for r, s in zip(results, sources, strict=True):
        groups["all"].append(r)
        groups[str(s)].append(r)
    out: dict[str, float] = {}
    for group, rs in groups.items():
        scored = [r for r in rs if r.score is not None]
        values: dict[str, float | None] = {
            "score": _mean([r.score for r in scored]),
            "U": _mean([r.user_reward for r in scored]),
            "L": _mean([r.llm_reward for r in scored]),
        }
        for name in COMPONENTS:
            values[name] = _mean([float(v) for r in scored if (v := r.components.get(name)) is not None])
        for name, value in values.items():
            if value is not None and math.isfinite(value):
                out[f"welfare/{name}/{group}"] = value
        judge = sum(1 for r in rs if r.error_kind == "judge")
        fmt = sum(1 for r in rs if r.error_kind == "format")
        out[f"welfare/judge_failures/{group}"] = float(judge)
        out[f"welfare/format_errors/{group}"] = float(fmt)
        out[f"welfare/format_error_rate/{group}"] = fmt / len(rs)
    return out
