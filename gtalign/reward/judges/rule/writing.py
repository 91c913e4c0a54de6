"""medium: 0-4 helpfulness of a writing draft.

A clarifying reply is rated as the prompt tells the judge to rate clarification ("helpful and aligned with intent"):
3 on the first turn, 2 once the conversation already has an assistant turn. A refusal-led short reply scores 0.
Anything else is binned by a content-word similarity to the ideal answer (`content_similarity`). Why not chrF or
BLEU: on the medium test set, the 175 recorded assistant drafts score against their own ideal versus another row's
ideal with AUC 0.986 under this measure, 0.80 under sacrebleu chrF and 0.83 under sacrebleu BLEU, and it is several
times faster than chrF. The bins come from those drafts (median 10.0 against their own ideal, 1.7 against another):
a good draft lands on 3, a close one on 4, a different article on 0-1; the ideal itself scores 4.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from gtalign.reward.judges.rule.text import CONTENT_WORD_RE, ascii_quotes, is_clarifying_reply, is_refusal

#: Upper bounds of the similarity bins for verdicts 0, 1, 2, 3; at or above the last bound -> 4 (see module doc).
MEDIUM_BINS: tuple[float, float, float, float] = (2.0, 4.0, 7.0, 12.0)
MEDIUM_BETA = 2.0
#: A reply with fewer distinct content words than this fraction of the ideal's is capped at 2.
MEDIUM_SHORT_FRACTION = 0.25
_STOPWORD_TEXT = """
a an the and or but if of to in on for with at by from as is are was were be been being it its it's this that these
those you your yours we our ours they their them i me my he she his her not no nor so than then there here what which
who whom how why when where can could will would should may might must do does did doing have has had having just also
more most very about into over under up down out all any each other such only own same too let i'm you're we're
they're that's there's don't can't won't isn't aren't i'll i'd you'll we'll
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def _content_tokens(text: str) -> list[str]:
    return [w for w in CONTENT_WORD_RE.findall(ascii_quotes(text).lower()) if w not in _STOPWORDS]


@functools.lru_cache(maxsize=2048)
def _reference_grams(reference: str) -> tuple[frozenset[str], frozenset[tuple[str, str]]]:
    toks = _content_tokens(reference)
    return frozenset(toks), frozenset(itertools.pairwise(toks))


def _f_beta(hyp: frozenset[Any] | set[Any], ref: frozenset[Any], beta: float) -> float:
    hits = len(hyp & ref) if hyp and ref else 0
    if not hits:
        return 0.0
    p, r = hits / len(hyp), hits / len(ref)
    return (1 + beta**2) * p * r / (beta**2 * p + r)


def _similarity(tokens: Sequence[str], reference: str, beta: float) -> float:
    ref_uni, ref_bi = _reference_grams(reference)
    return 50.0 * (_f_beta(set(tokens), ref_uni, beta) + _f_beta(set(itertools.pairwise(tokens)), ref_bi, beta))


def content_similarity(response: str, reference: str, beta: float = MEDIUM_BETA) -> float:
    """Mean of unigram and bigram F-beta over content-word types (stopwords out), 0-100; reference side cached.

    beta = 2 weights recall (how much of the ideal article is covered) over precision, as chrF does, so a short
    reply that copies a sentence of the ideal does not outscore a complete draft.
    """
    return _similarity(_content_tokens(response), reference, beta)


def prior_assistant_turns(extra_info: Mapping[str, Any]) -> int:
    history = extra_info.get("chat_history") if isinstance(extra_info, Mapping) else None
    if history is None or isinstance(history, str | bytes):
        return 0
    try:
        return sum(1 for m in history if isinstance(m, Mapping) and m.get("role") == "assistant")
    except TypeError:
        return 0


def medium_verdict(
    response: str,
    ideal: str,
    *,
    prior_assistant_turns: int = 0,
    bins: Sequence[float] = MEDIUM_BINS,
    clarify_first: float = 3.0,
    clarify_later: float = 2.0,
) -> float:
    """0-4 helpfulness: clarifying questions rated as the prompt asks, anything else binned by content F-score."""
    if not response.strip():
        return 0.0
    if is_clarifying_reply(response):
        return clarify_first if prior_assistant_turns == 0 else clarify_later
    if len(response.split()) < 80 and is_refusal(response):
        return 0.0
    tokens = _content_tokens(response)
    similarity = _similarity(tokens, ideal, MEDIUM_BETA)
    score = float(sum(similarity >= b for b in bins))
    if len(set(tokens)) < MEDIUM_SHORT_FRACTION * len(_reference_grams(ideal)[0]):
        score = min(score, 2.0)  # a fragment of an article is at best "partially helpful, missing key elements"
    return score
