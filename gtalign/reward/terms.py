"""The reward's building blocks, pure functions with the published semantics.

`char_bleu` deserves a note: the published medium reward calls `nltk.translate.bleu_score.sentence_bleu` with plain
strings, so nltk treats every *character* as a token. We reproduce that exactly (uniform 4-gram weights, no
smoothing: a zero-count order contributes log(sys.float_info.min)), but with reference n-gram counts cached per
ground truth, which makes it several times faster than nltk; tests check equality with nltk itself.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

_LOG_TINY = math.log(sys.float_info.min)


def _logistic_edge(x: float) -> float:
    """1 / (1 + e^x) without overflow for large x."""
    if x > 700:
        return 0.0
    return 1.0 / (1.0 + math.exp(x))


def length_band(n_words: int, lo: float, hi: float, k: float) -> float:
    return _logistic_edge(k * (lo - n_words)) * _logistic_edge(k * (n_words - hi))


def latency(reasoning_chars: int, scale: float) -> float:
    return math.exp(-reasoning_chars / scale)


def payoff_asymmetry(payoff: Mapping[str, Mapping[str, Any]]) -> float:
    """1/12 per cell whose LLM and user payoffs differ, and 1/12 more when they differ by over 10 % (relative).

    Works on the raw parsed values (int, float, bool, NaN) so that it matches the published arithmetic exactly.
    """
    total = 0.0
    for value in payoff.values():
        u, v = value["user"], value["LLM"]
        if u != v:
            total += 1 / 12
        denom = max(abs(u), abs(v), 1e-8)
        if abs(u - v) / denom > 0.1:
            total += 1 / 12
    return total


def _ngram_counts(text: str, n: int) -> Counter[str]:
    return Counter(text[i : i + n] for i in range(len(text) - n + 1)) if len(text) >= n else Counter()


@lru_cache(maxsize=4096)
def _reference_counts(reference: str) -> tuple[Counter[str], ...]:
    return tuple(_ngram_counts(reference, n) for n in (1, 2, 3, 4))


def char_bleu(reference: str, hypothesis: str) -> float:
    """nltk's `sentence_bleu([reference], hypothesis)` on raw strings: character-level BLEU-4, no smoothing."""
    ref_counts = _reference_counts(reference)
    numerators: list[int] = []
    denominators: list[int] = []
    for n in (1, 2, 3, 4):
        counts = _ngram_counts(hypothesis, n)
        ref = ref_counts[n - 1]
        numerators.append(sum(min(c, ref[g]) for g, c in counts.items()))
        denominators.append(max(1, sum(counts.values())))
    if numerators[0] == 0:
        return 0.0
    hyp_len, ref_len = len(hypothesis), len(reference)
    bp = 1.0 if hyp_len > ref_len else (0.0 if hyp_len == 0 else math.exp(1 - ref_len / hyp_len))
    log_sum = math.fsum(
        0.25 * (math.log(num / den) if num else _LOG_TINY) for num, den in zip(numerators, denominators, strict=True)
    )
    return bp * math.exp(log_sum)
