"""The reward's building blocks, pure functions with the published semantics.

`char_bleu` deserves a note: the published medium reward calls `nltk.translate.bleu_score.sentence_bleu` with plain
strings, so nltk treats every *character* as a token. We reproduce that exactly (uniform 4-gram weights, no
smoothing: a zero-count order contributes log(sys.float_info.min)), but with every n-gram packed into one integer and
counted by numpy, and the reference's counts cached per ground truth: over 20x faster than nltk on article-length
text. Tests check equality with nltk itself.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np

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


def _ngram_counts(text: str, n: int) -> Counter:
    """Character n-gram counts as tuples of chars, exactly nltk's `ngrams` (the general fallback path)."""
    return Counter(zip(*(text[i:] for i in range(n)), strict=False))


_ORDER_SHIFT = np.uint64(40)  # n-gram order tag above the packed characters


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def _tagged_grams(codes: np.ndarray, bits: int) -> np.ndarray:
    """All 1- to 4-grams of `codes`, each packed into one uint64 with its order n tagged above bit 40."""
    shift, parts = np.uint64(bits), []
    for n in (1, 2, 3, 4):
        m = codes.size - n + 1
        if m <= 0:
            break
        keys = codes[:m].copy()
        for j in range(1, n):
            keys = (keys << shift) | codes[j : j + m]
        parts.append(keys | (np.uint64(n) << _ORDER_SHIFT))
    return np.concatenate(parts) if parts else np.empty(0, np.uint64)


@lru_cache(maxsize=1024)
def _reference_index(reference: str) -> tuple[np.ndarray, int, np.ndarray, np.ndarray] | None:
    """The reference's character table and tagged n-gram counts, or None when 4 chars would not fit in 40 bits.

    `table[code point]` is the character's number 1..K in the reference's alphabet, 0 when the reference lacks it;
    its last slot (0) catches every code point above the reference's largest.
    """
    points = _code_points(reference)
    alphabet = np.unique(points)
    bits = 8 if alphabet.size < 2**8 else 10 if alphabet.size < 2**10 else 0
    if not bits:
        return None
    table = np.zeros(int(alphabet[-1]) + 2 if alphabet.size else 1, dtype=np.uint64)
    table[alphabet] = np.arange(1, alphabet.size + 1, dtype=np.uint64)
    keys, counts = np.unique(_tagged_grams(table[points], bits), return_counts=True)
    return table, bits, keys, counts


def _clipped_matches_packed(reference: str, hypothesis: str) -> list[int] | None:
    """Clipped n-gram matches, n = 1..4, with one sort of the hypothesis' n-grams.

    Characters are renumbered by the reference's alphabet; a character the reference lacks becomes 0, which no
    reference n-gram contains, so such n-grams can never match: the clipped counts stay exact.
    """
    index = _reference_index(reference)
    if index is None:
        return None
    table, bits, ref_keys, ref_counts = index
    codes = table[np.minimum(_code_points(hypothesis), table.size - 1)]
    keys, counts = np.unique(_tagged_grams(codes, bits), return_counts=True)
    if not ref_keys.size or not keys.size:
        return [0, 0, 0, 0]
    at = np.minimum(np.searchsorted(ref_keys, keys), ref_keys.size - 1)
    hit = ref_keys[at] == keys
    clipped = np.minimum(counts[hit], ref_counts[at[hit]])
    orders = (keys[hit] >> _ORDER_SHIFT).astype(np.int64)
    return [int(x) for x in np.bincount(orders, weights=clipped, minlength=5)[1:5]]


def _clipped_matches_counter(reference: str, hypothesis: str) -> list[int]:
    out = []
    for n in (1, 2, 3, 4):
        counts, ref = _ngram_counts(hypothesis, n), _ngram_counts(reference, n)
        out.append(sum((counts & ref).values()))
    return out


def char_bleu(reference: str, hypothesis: str) -> float:
    """nltk's `sentence_bleu([reference], hypothesis)` on raw strings: character-level BLEU-4, no smoothing."""
    numerators = _clipped_matches_packed(reference, hypothesis)
    if numerators is None:
        numerators = _clipped_matches_counter(reference, hypothesis)
    if numerators[0] == 0:
        return 0.0
    hyp_len, ref_len = len(hypothesis), len(reference)
    denominators = [max(1, hyp_len - n + 1) for n in (1, 2, 3, 4)]
    bp = 1.0 if hyp_len > ref_len else (0.0 if hyp_len == 0 else math.exp(1 - ref_len / hyp_len))
    log_sum = math.fsum(
        0.25 * (math.log(num / den) if num else _LOG_TINY) for num, den in zip(numerators, denominators, strict=True)
    )
    return bp * math.exp(log_sum)
