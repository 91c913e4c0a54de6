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


def _codes(text: str) -> np.ndarray | None:
    """Code points as uint64, or None when a character lies outside the BMP (then 4 x 16 bits would not pack)."""
    a = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    if a.size and int(a.max()) > 0xFFFF:
        return None
    return a.astype(np.uint64)


def _packed_counts(codes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each n-gram packed into one uint64 (16 bits per char, collision-free), then counted by sorting."""
    m = codes.size - n + 1
    if m <= 0:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    keys = codes[:m].copy()
    for j in range(1, n):
        keys = (keys << np.uint64(16)) | codes[j : j + m]
    return np.unique(keys, return_counts=True)


@lru_cache(maxsize=4096)
def _reference_packed(reference: str) -> tuple[tuple[np.ndarray, np.ndarray], ...] | None:
    codes = _codes(reference)
    return None if codes is None else tuple(_packed_counts(codes, n) for n in (1, 2, 3, 4))


def _clipped_matches_packed(reference: str, hypothesis: str) -> list[int] | None:
    ref = _reference_packed(reference)
    codes = _codes(hypothesis)
    if ref is None or codes is None:
        return None
    out = []
    for n in (1, 2, 3, 4):
        hk, hc = _packed_counts(codes, n)
        rk, rc = ref[n - 1]
        _, ih, ir = np.intersect1d(hk, rk, assume_unique=True, return_indices=True)
        out.append(int(np.minimum(hc[ih], rc[ir]).sum()))
    return out


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
