"""ambig_qa, abg-coqa: 1 = good ambiguity handling, 0 = poor.

The label comes from the ground truth: ambig_qa `multipleQAs###...` is ambiguous, `singleAnswer###...` not;
abg-coqa `ambiguous` / `non_ambiguous` (`extra_info["ground_truth"]` first, as the published code reads it). An
ambiguous question is handled by a clarifying question (`text.asks_clarifying_question`) or a reply that covers
several interpretations; a non-ambiguous one by an answer, follow-up question or not. Correctness is not checked:
the published prompt does not give the judge the reference answer either.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gtalign.reward.judges.rule.text import asks_clarifying_question, clean_text, gives_answer

_INTERPRETATION_RE = re.compile(
    r"""\b(?:
        it\s+depends\s+on|depend(?:s|ing)\s+on\s+(?:whether|which|what|if|how|the\s+context)
        |(?:could|can|may|might)\s+(?:refer|be\s+referring)\s+to
        |there\s+(?:are|is|were)\s+(?:several|multiple|two|three|a\s+few|different|various|many)\s+
            (?:possible\s+|different\s+)?(?:interpretations|meanings|answers|ways\s+to\s+(?:interpret|read|understand)|
            possibilities|versions|people|candidates|records|things)
        |(?:is|question\s+is|this\s+is)\s+ambiguous|ambiguity
        |(?:several|multiple|two|different)\s+(?:possible\s+)?(?:interpretations|meanings|readings|senses)
        |in\s+(?:one|another|the\s+other)\s+sense|on\s+the\s+other\s+hand
    )""",
    re.X,
)
_IF_MEAN_RE = re.compile(
    r"\bif\s+(?:you(?:'re|\s+are)?\s+(?:mean|meant|referring|asking|talking)|by\s+\S+\s+you\s+mean)"
)


def covers_interpretations(text: str) -> bool:
    """The reply lays out several readings of the question (the prompt's other form of good ambiguity handling)."""
    clean = clean_text(text)
    return bool(_INTERPRETATION_RE.search(clean)) or len(_IF_MEAN_RE.findall(clean)) >= 2


def ambiguity_verdict(response: str, ambiguous: bool) -> float:
    """1 = good ambiguity handling: ambiguous -> clarify or cover readings; non-ambiguous -> answer."""
    if not response.strip():
        return 0.0
    if ambiguous:
        return 1.0 if asks_clarifying_question(response) or covers_interpretations(response) else 0.0
    return 1.0 if gives_answer(response) else 0.0


def ambig_qa_label(ground_truth: str) -> bool:
    head, sep, _ = ground_truth.partition("###")
    if sep and head.strip() == "multipleQAs":
        return True
    if sep and head.strip() == "singleAnswer":
        return False
    raise ValueError(f"ambig_qa ground_truth must start with 'multipleQAs###' or 'singleAnswer###', got {head[:40]!r}")


_ABG_LABELS = {"ambiguous": True, "non_ambiguous": False, "non-ambiguous": False}


def abg_coqa_label(ground_truth: str, extra_info: Mapping[str, Any]) -> bool:
    value = extra_info.get("ground_truth") if isinstance(extra_info, Mapping) else None
    label = str(value if isinstance(value, str) and value.strip() else ground_truth).strip().lower()
    if label not in _ABG_LABELS:
        raise ValueError(f"abg-coqa label must be 'ambiguous' or 'non_ambiguous', got {label[:40]!r}")
    return _ABG_LABELS[label]
