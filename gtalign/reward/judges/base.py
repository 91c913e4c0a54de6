"""The one judge interface: every judge turns a batch of requests into verdicts on the source's own scale.

A verdict is the number the published judge prompt would have replied (0/1 for math and ambiguity, 0-4 for
medium, 0/0.5/1 for safety). Mapping verdicts to answer-quality terms is the task's job (`gtalign.reward.tasks`),
so judges stay interchangeable: `column` replays recorded verdicts, `rule` computes them offline, `openai` asks a
served model. A judge never returns a silent zero: a verdict it could not obtain carries `error` and `value=None`,
and the caller counts and reports it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class JudgeRequest:
    """What a judge may look at for one completion."""

    source: str  # canonical data_source: math-hard, medium, wildguard, ambig_qa, minerva, advbench, abg-coqa
    response: str  # the stripped <response> block, exactly what the published judge prompts receive
    ground_truth: str
    extra_info: Mapping[str, Any] = field(default_factory=dict)
    recorded: float | None = None  # the row's `judge_score`, if the input carried one


@dataclass(frozen=True, slots=True)
class JudgeVerdict:
    value: float | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.value is not None


@runtime_checkable
class Judge(Protocol):
    name: str

    def judge(self, requests: Sequence[JudgeRequest]) -> list[JudgeVerdict]:
        """One verdict per request, in order. Must not raise for a single bad request."""
        ...
