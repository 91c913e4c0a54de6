"""The welfare reward: U, L and their aggregate for one completion, and for a batch through a judge.

    U = eps + w_a * A_user + w_len * band(words(response); 20, 500) + w_lat * exp(-chars(before <response>) / 500)
    L = eps + w_fmt * format + w_pay * payoff + w_a * A_llm + w_len * band(words(completion); 500, 1000)
        [+ w_mat * matrix_consistency, off by default]
    reward = W(U, L), a `gtalign.game.WelfareRule`: sqrt(U*L) (GTAlign), (U+L)/2, U, L, or CES

A completion whose `<response>` or `<payoff>` cannot be read gets the published all-zero reward with `error` set
("format: ..."). A verdict the judge could not give makes the row's reward unknown (`score=None`,
"judge: ..."): it is counted, never turned into a zero. Training and evaluation both call `score_batch`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gtalign.game import Payoff, WelfareRule, welfare
from gtalign.protocol import TolerantReading, read_tolerant
from gtalign.reward.config import RewardConfig
from gtalign.reward.consistency import matrix_consistency
from gtalign.reward.judges.base import Judge, JudgeRequest, JudgeVerdict
from gtalign.reward.tasks import Task, get_task
from gtalign.reward.terms import latency, length_band, payoff_asymmetry
from gtalign.sources import UnknownSourceError

COMPONENTS = ("answer_user", "answer_llm", "format", "payoff", "length_user", "length_llm", "latency", "matrix")


@dataclass(frozen=True, slots=True)
class RewardInput:
    completion: str
    data_source: str
    ground_truth: str
    extra_info: Mapping[str, Any] = field(default_factory=dict)
    judge_score: float | None = None


@dataclass(frozen=True, slots=True)
class RewardResult:
    score: float | None
    user_reward: float | None
    llm_reward: float | None
    answer_reward: float | None = None  # the published code's logged answer quality
    verdict: float | None = None
    components: dict[str, float | None] = field(default_factory=dict)
    error: str | None = None

    @property
    def error_kind(self) -> str | None:
        return None if self.error is None else self.error.split(":", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "user_reward": self.user_reward,
            "llm_reward": self.llm_reward,
            "answer_reward": self.answer_reward,
            "verdict": self.verdict,
            **self.components,
            "error": self.error,
        }


def _zero(reason: str) -> RewardResult:
    return RewardResult(0.0, 0.0, 0.0, 0.0, None, dict.fromkeys(COMPONENTS, 0.0), reason)


def _unknown(reason: str) -> RewardResult:
    return RewardResult(None, None, None, None, None, dict.fromkeys(COMPONENTS), reason)


def score_reading(
    reading: TolerantReading, task: Task, ground_truth: str, verdict: float, cfg: RewardConfig
) -> RewardResult:
    """The reward of an already-read completion given the judge's verdict. Pure."""
    if reading.error is not None:
        return _zero(f"format: {reading.error}")
    response, completion_words = reading.response or "", reading.completion_words
    answer = task.answer(verdict, ground_truth, response)
    fmt = 1.0 if reading.format_ok else 0.0
    pay = payoff_asymmetry(reading.payoff or {})
    len_user = length_band(len(response.split()), cfg.user_band.lo, cfg.user_band.hi, cfg.user_band.k)
    len_llm = length_band(completion_words, cfg.llm_band.lo, cfg.llm_band.hi, cfg.llm_band.k)
    lat = latency(len(reading.reasoning), cfg.latency_scale)
    w_u, w_l = cfg.user, cfg.llm
    user = cfg.epsilon + w_u.answer * answer.user + w_u.length * len_user + w_u.latency * lat
    llm = cfg.epsilon + w_l.format * fmt + w_l.payoff * pay + w_l.answer * answer.llm + w_l.length * len_llm
    mat = None
    if w_l.matrix:
        mat = matrix_consistency(reading, WelfareRule(kind=cfg.analyze_rule)).score
        llm += w_l.matrix * mat
    components = {
        "answer_user": float(answer.user),
        "answer_llm": float(answer.llm),
        "format": fmt,
        "payoff": pay,
        "length_user": len_user,
        "length_llm": len_llm,
        "latency": lat,
        "matrix": mat,
    }
    score = welfare(Payoff(llm=llm, user=user), WelfareRule(cfg.aggregation, alpha=cfg.alpha, rho=cfg.rho))
    return RewardResult(score, user, llm, float(answer.logged), float(verdict), components, None)


def read(row: RewardInput) -> tuple[Task | None, TolerantReading | None, str | None]:
    """Validate a row and read its completion: (task, reading, input error)."""
    try:
        task = get_task(row.data_source)
    except UnknownSourceError as e:
        return None, None, f"input: {e}"
    if not isinstance(row.completion, str):
        return task, None, f"input: completion must be a string, got {type(row.completion).__name__}"
    if not isinstance(row.ground_truth, str):
        return task, None, f"input: ground_truth must be a string, got {type(row.ground_truth).__name__}"
    return task, read_tolerant(row.completion, require_analyze=task.requires_analyze), None


def score_batch(rows: Sequence[RewardInput], judge: Judge, cfg: RewardConfig | None = None) -> list[RewardResult]:
    """Score rows in order: read every completion, ask the judge once for all readable ones, combine."""
    cfg = cfg or RewardConfig()
    readings = [read(r) for r in rows]
    pending = [
        i for i, (task, reading, err) in enumerate(readings) if err is None and reading and reading.error is None
    ]
    requests = [
        JudgeRequest(
            source=rows[i].data_source,
            response=readings[i][1].response or "",
            ground_truth=rows[i].ground_truth,
            extra_info=rows[i].extra_info or {},
            recorded=rows[i].judge_score,
        )
        for i in pending
    ]
    verdicts: dict[int, JudgeVerdict] = dict(zip(pending, judge.judge(requests), strict=True)) if requests else {}
    out: list[RewardResult] = []
    for i, (task, reading, err) in enumerate(readings):
        if err is not None:
            out.append(_unknown(err))
        elif reading.error is not None:
            out.append(_zero(f"format: {reading.error}"))
        elif not (v := verdicts[i]).ok:
            out.append(_unknown(f"judge: {v.error or 'no verdict'}"))
        else:
            out.append(score_reading(reading, task, rows[i].ground_truth, v.value, cfg))
    return out


def score_completion(
    completion: str,
    data_source: str,
    ground_truth: str,
    verdict: float,
    cfg: RewardConfig | None = None,
) -> RewardResult:
    """One completion with a known verdict (the recorded-verdict path, handy in notebooks and tests)."""
    task, reading, err = read(RewardInput(completion, data_source, ground_truth))
    if err is not None:
        return _unknown(err)
    return score_reading(reading, task, ground_truth, verdict, cfg or RewardConfig())


def iter_errors(results: Iterable[RewardResult]) -> dict[str, int]:
    """Counts of errors by kind and reason head, for summaries."""
    counts: dict[str, int] = {}
    for r in results:
        if r.error:
            key = r.error.split(" (", 1)[0][:80]
            counts[key] = counts.get(key, 0) + 1
    return counts
