"""Scoring JSONL files: one output line per input line, in order, whatever each line holds.

A bad line (not JSON, not an object, a missing or mistyped field, an unknown data_source) becomes an output line
with `error` set; it never stops the run or shifts the lines after it. Lines are scored in chunks so that a served
judge sees enough concurrent requests and progress can be shown.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from gtalign.reward.config import RewardConfig
from gtalign.reward.judges.base import Judge
from gtalign.reward.score import COMPONENTS, RewardInput, RewardResult, score_batch

REQUIRED_FIELDS = ("completion", "data_source", "ground_truth")
_EMPTY_OUTPUT = {
    "score": None,
    "user_reward": None,
    "llm_reward": None,
    "answer_reward": None,
    "verdict": None,
    **dict.fromkeys(COMPONENTS),
}


def parse_line(line: str, lineno: int) -> RewardInput | str:
    """A RewardInput, or the reason the line cannot be one (naming the line and the field)."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        try:  # orjson is strict about NaN and huge integers; accept whatever Python's json accepts
            obj = json.loads(line)
        except ValueError as e:
            return f"input: line {lineno}: bad JSON line ({e})"
    if not isinstance(obj, dict):
        return f"input: line {lineno}: expected a JSON object, got {type(obj).__name__}"
    for name in REQUIRED_FIELDS:
        if name not in obj:
            return f"input: line {lineno}: missing field {name!r}"
        if not isinstance(obj[name], str):
            return f"input: line {lineno}: field {name!r} must be a string, got {type(obj[name]).__name__}"
    score = obj.get("judge_score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, int | float)):
        return f"input: line {lineno}: field 'judge_score' must be a number or null, got {score!r}"
    extra = obj.get("extra_info") or {}
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except ValueError:
            return f"input: line {lineno}: field 'extra_info' is a string but not JSON"
    if not isinstance(extra, dict):
        return f"input: line {lineno}: field 'extra_info' must be an object, got {type(extra).__name__}"
    return RewardInput(obj["completion"], obj["data_source"], obj["ground_truth"], extra, score)


@dataclass
class ScoreSummary:
    rows: int = 0
    scored: int = 0
    score_sum: float = 0.0
    by_source: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def mean_score(self) -> float:
        return self.score_sum / self.scored if self.scored else math.nan

    def add(self, source: str | None, result: RewardResult | None, error: str | None) -> None:
        self.rows += 1
        if source:
            self.by_source[source] += 1
        if error:
            kind = error.split(":", 1)[0]
            head = error.split(": ", 1)[-1]
            if kind == "input":  # drop the line number so the same problem on many lines groups together
                head = head.split(": ", 1)[-1]
            self.errors[f"{kind}: {head.split(' (', 1)[0][:70]}"] += 1
        if result is not None and result.score is not None:
            self.scored += 1
            self.score_sum += result.score

    @property
    def judge_failures(self) -> int:
        return sum(n for k, n in self.errors.items() if k.startswith("judge:"))


def _chunks(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def score_jsonl(
    lines: Iterable[str],
    out: IO[str],
    judge: Judge,
    cfg: RewardConfig,
    *,
    chunk_size: int = 1024,
    on_progress: Callable[[int], None] | None = None,
) -> ScoreSummary:
    summary = ScoreSummary()
    lineno = 0
    for chunk in _chunks(lines, chunk_size):
        parsed: list[RewardInput | str] = []
        for line in chunk:
            lineno += 1
            parsed.append(parse_line(line, lineno))
        good = [p for p in parsed if isinstance(p, RewardInput)]
        results = iter(score_batch(good, judge, cfg))
        buf: list[str] = []
        for p in parsed:
            if isinstance(p, str):
                record: dict[str, Any] = {**_EMPTY_OUTPUT, "error": p}
                summary.add(None, None, p)
            else:
                r = next(results)
                record = r.to_dict()
                summary.add(p.data_source, r, r.error)
            buf.append(orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY))
        out.write(b"\n".join(buf).decode() + "\n")
        if on_progress:
            on_progress(len(chunk))
    return summary
