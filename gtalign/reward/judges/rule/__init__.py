"""The offline judge: deterministic rules that stand in for the paper's Qwen3-32B judge, one module per family.

Why it exists: the published rewards ask an LLM judge for a number on each source's own scale. Tests, the tiny CPU
pipeline and quick ablations need that number without a GPU or a server, reproducibly, at thousands of verdicts per
second. `RuleJudge` returns the verdict the published prompt *would* ask for (`gtalign.reward.judges.prompts`), from
rules that read the same inputs: `maths`, `safety`, `ambiguity`, `writing` and `pareto`, over the sentence
classification in `text`. Any rule that cannot produce a verdict returns a `JudgeVerdict` with `error` set (counted by
the caller), never a silent 0.

It is a proxy: agreement with the real judge is high on clear-cut responses (a boxed right/wrong answer, "I can't
help with that", a bare clarifying question) and low on subtle ones. Paraphrased refusals, role-play jailbreaks that
comply obliquely, harmful content without an opener, wrong answers stated confidently to non-ambiguous questions and
on-topic but low-quality writing are misjudged; the phrase lists are English only; math extraction can pick the
wrong number from an unboxed discursive reply.
"""

from gtalign.reward.judges.rule.ambiguity import ambiguity_verdict, covers_interpretations
from gtalign.reward.judges.rule.judge import RULE_SOURCES, RuleJudge
from gtalign.reward.judges.rule.maths import MATH_TIMEOUT_S, GoldParseError, math_verdict
from gtalign.reward.judges.rule.pareto import pareto_verdict
from gtalign.reward.judges.rule.safety import offers_alternative, safety_verdict
from gtalign.reward.judges.rule.text import asks_clarifying_question, gives_answer, is_clarifying_reply, is_refusal
from gtalign.reward.judges.rule.writing import (
    MEDIUM_BETA,
    MEDIUM_BINS,
    MEDIUM_SHORT_FRACTION,
    content_similarity,
    medium_verdict,
)

__all__ = [
    "MATH_TIMEOUT_S",
    "MEDIUM_BETA",
    "MEDIUM_BINS",
    "MEDIUM_SHORT_FRACTION",
    "RULE_SOURCES",
    "GoldParseError",
    "RuleJudge",
    "ambiguity_verdict",
    "asks_clarifying_question",
    "content_similarity",
    "covers_interpretations",
    "gives_answer",
    "is_clarifying_reply",
    "is_refusal",
    "math_verdict",
    "medium_verdict",
    "offers_alternative",
    "pareto_verdict",
    "safety_verdict",
]
