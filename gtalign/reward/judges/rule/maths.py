"""math-hard, minerva: 1 correct, 0 incorrect, decided by math-verify (`verify(gold, prediction)`).

The gold is bare LaTeX, normalised and wrapped in `$...$`; a gold that yields no mathematical object is a verdict
error (`GoldParseError`), not a 0. A reply that is only a question yields no answer and scores 0: the published
prompt scores an answer that "misses the ground truth" 0. minerva also accepts a numeric answer within a tolerance
(`rel_tol`), since its golds are rounded measurements; math-hard stays exact. math-verify times out with
`signal.alarm`, which works only on the main thread: elsewhere its timeouts are disabled, as math-verify requires,
so a pathological expression can stall a worker thread.
"""

from __future__ import annotations

import functools
import math
import re
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
from sympy import Basic, MatrixBase

from gtalign.reward.judges.rule.text import LINE_RE, SENTENCE_RE, ascii_quotes, is_question


class GoldParseError(ValueError):
    """The ground truth yields no mathematical object, so no verdict is possible (an error, not a wrong answer)."""


#: math-verify's per-call timeout in whole seconds (it uses `signal.alarm`); applied on the main thread only.
MATH_TIMEOUT_S = 3
_GOLD_CONFIG = (LatexExtractionConfig(), ExprExtractionConfig())
_LATEX_CONFIG = (LatexExtractionConfig(),)
_EXPR_CONFIG = (ExprExtractionConfig(),)
_PERCENT_RE = re.compile(r"\\?%")
_DOT_SLASH_RE = re.compile(r"(\d)\./")  # minerva writes -1/3 as "-1./3"
_UNESCAPED_DOLLAR_RE = re.compile(r"(?<!\\)\$")
_SCI_RE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s*[eE]\s*([+-]?\d+)(?![\w.])")
_LATEX_SCI_RE = re.compile(r"(\d)\s*(?:\\times|\\cdot|×|\*|x)\s*10\s*\^\s*\{\s*([+-]?\d+)\s*\}")
_PLAIN_SCI_RE = re.compile(r"(\d)\s*(?:\\times|\\cdot|×|\*|x)\s*10\s*\^\s*\(?([+-]?\d+)\)?")
_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*")
_ANCHOR_SPLIT_RE = re.compile(r"(?i)\b(?:is|equals|be)\b|[:=]")
_BARE_MAX_CHARS = 300
_BARE_COMMAND_RE = re.compile(r"\\[a-zA-Z]+")
_DELIMITER_RE = re.compile(r"(?<!\\)\$|\\\(|\\\[")
_BRACED_RE = re.compile(r"\{[^{}]*\}")  # braced arguments hold math or \text labels, not prose
_WORDY_RE = re.compile(r"[a-z]{3,}")  # prose; uppercase symbols such as "MR=SRMC" are math
# `[A-Za-z]{2}` then the rest, not `{2,}`: the same language, but unambiguous. With `{2,}` a failing match
# backtracks over every split of every word (exponential on replies such as "the the the ... point{1000").
_TRAILING_WORDS_RE = re.compile(r"(?:\s+[A-Za-z]{2}[A-Za-z/^\d-]*[.,]?)+$")  # " inches", " square units", " erg/s"


def _timeout(seconds: int) -> int | None:
    """math-verify's `signal.alarm` timeouts work only on the main thread; elsewhere they must be disabled (None)."""
    return seconds if threading.current_thread() is threading.main_thread() else None


def _parse(text: str, config: Sequence[Any], timeout_s: int = MATH_TIMEOUT_S) -> list[Any]:
    return parse(text, extraction_config=config, parsing_timeout=_timeout(timeout_s))


def _has_math(parsed: Iterable[Any]) -> bool:
    return any(isinstance(x, Basic | MatrixBase) for x in parsed)


def _normalize_math(text: str) -> str:
    """Spellings a judge reads as equal but math-verify does not: "17\\%" = "17", "4.5e33" (not Euler's e), "-1./3"."""
    text = _PERCENT_RE.sub("", text)
    text = _SCI_RE.sub(r"\1\\times 10^{\2}", text)
    return _DOT_SLASH_RE.sub(r"\1/", text)


def _normalize_gold(gold: str) -> str:
    """Bare LaTeX gold -> `$...$` (math-verify extracts nothing from bare LaTeX); currency `\\$` and `\\!` dropped."""
    g = _normalize_math(gold.strip().replace("\\$", "").replace("\\!", ""))
    if _UNESCAPED_DOLLAR_RE.search(g) or "\\boxed" in g:
        return g
    return f"${g}$"


@functools.lru_cache(maxsize=8192)
def _gold_cached(gold: str) -> tuple[Any, ...]:
    """Parsed gold, cached per gold string; () when nothing mathematical could be extracted."""
    wrapped = _normalize_gold(gold)
    parsed = _parse(wrapped, _GOLD_CONFIG)
    if not _has_math(parsed) and _UNESCAPED_DOLLAR_RE.search(wrapped):
        # stray inner dollars (minerva: "x_{0} \cos(\omega t)+$ $\dot{x}_{0} ...") -> drop them all and re-wrap
        parsed = _parse(f"${_UNESCAPED_DOLLAR_RE.sub(' ', wrapped).strip()}$", _GOLD_CONFIG)
    return tuple(parsed) if _has_math(parsed) else ()


def _last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` / `\\fbox{...}` (balanced braces), or None."""
    for m in reversed(list(_BOX_RE.finditer(text))):
        i = m.end()
        if i < len(text) and text[i] == "{":
            depth = 0
            for j in range(i, len(text)):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1 : j].strip()
        elif i < len(text):
            token = re.match(r"[^\s$.,;]+", text[i:])
            if token:
                return token.group(0)
    return None


def _drop_questions(text: str) -> str:
    """The reply without its question sentences, so a follow-up question cannot supply the final answer."""
    pieces = (p for line in LINE_RE.split(text) for p in SENTENCE_RE.split(line))
    return "\n".join(p for p in pieces if p and not is_question(p))


def _is_bare_math(body: str) -> bool:
    """A reply (up to 300 characters) that is only math, with no delimiters: no lowercase word of 3+ letters outside
    LaTeX commands and their braces ("1 - 2x", "MR=SRMC", "\\frac{3\\sqrt3}{\\pi}"; not "the answer is 42")."""
    stripped = body.strip()
    if not stripped or len(stripped) > _BARE_MAX_CHARS or _DELIMITER_RE.search(stripped):
        return False
    return not _WORDY_RE.search(_BRACED_RE.sub(" ", _BARE_COMMAND_RE.sub(" ", stripped)))


def _plain_numbers(body: str, timeout_s: int) -> list[Any]:
    """Numbers and arithmetic outside LaTeX ("the answer is 42", "4.5 x 10^33")."""
    plain = _PLAIN_SCI_RE.sub(r"\1*10^(\2)", _LATEX_SCI_RE.sub(r"\1*10^(\2)", body))
    return _parse(plain, _EXPR_CONFIG, timeout_s)


def _bare_latex(body: str, timeout_s: int) -> list[Any]:
    """The tail after the last "is"/":"/"=" (trailing unit words dropped), else the whole short reply, in `$...$`."""
    stripped = body.strip().rstrip(".")
    if not stripped or _UNESCAPED_DOLLAR_RE.search(stripped):
        return []
    tail = _TRAILING_WORDS_RE.sub("", _ANCHOR_SPLIT_RE.split(stripped)[-1]).strip()
    for candidate in dict.fromkeys((tail, stripped)):
        if _is_bare_math(candidate):  # prose wrapped in $...$ would parse as a product of letters
            pred = _parse(f"${candidate}$", _LATEX_CONFIG, timeout_s)
            if _has_math(pred):
                return pred
    return []


def _extract_prediction(response: str, timeout_s: int = MATH_TIMEOUT_S) -> list[Any]:
    """The response's final answer as math-verify objects: the first of these passes that yields math.

    (1) The content of the LAST `\\boxed{}` / `\\fbox{}`. Then, on the reply without its question sentences (so
    the follow-up question of an AQ reply cannot supply the answer): (2) the whole reply if it is short bare math
    ("1 - 2x"), (3) LaTeX spans (`$..$`, `\\(..\\)`, `\\[..\\]`), (4) plain numbers and arithmetic ("the answer
    is 42"), (5) bare LaTeX after the last "is"/"="/":" with unit words dropped ("r = \\frac{3\\sqrt3}{\\pi}
    inches"); (4) and (5) swap when the reply holds a bare LaTeX command.
    """
    text = _normalize_math(ascii_quotes(response))
    boxed = _last_boxed(text)
    if boxed:
        pred = _parse(f"${boxed}$", _LATEX_CONFIG, timeout_s)
        if _has_math(pred):
            return pred
    body = _drop_questions(text)
    if _is_bare_math(body):  # "1 - 2x", "y'+ry=0": the LaTeX pass would take a fragment of it, the number pass "1"
        pred = _parse(f"${body.strip().rstrip('.')}$", _LATEX_CONFIG, timeout_s)
        if _has_math(pred):
            return pred
    pred = _parse(body, _LATEX_CONFIG, timeout_s)
    if _has_math(pred):
        return pred
    # bare LaTeX outside any delimiter ("r = \frac{3\sqrt3}{\pi} inches") goes before the number pass grabs a "3"
    passes = (_bare_latex, _plain_numbers) if _BARE_COMMAND_RE.search(body) else (_plain_numbers, _bare_latex)
    for extract in passes:
        pred = extract(body, timeout_s)
        if _has_math(pred):
            return pred
    return []


_DECIMAL_GOLD_RE = re.compile(r"^\s*-?(\d+)(?:\.(\d+))?(?:\s*(?:[eE]|\\times\s*10\^)\s*\{?([+-]?\d+)\}?)?\s*$")


def _as_float(x: Any) -> float | None:
    try:
        if isinstance(x, Basic) and x.is_number and not x.free_symbols:
            v = complex(x.evalf())
            return v.real if abs(v.imag) < 1e-12 and math.isfinite(v.real) else None
    except (TypeError, ValueError, ArithmeticError):
        return None
    return None


def _numeric_close(gold_text: str, gold: Sequence[Any], pred: Sequence[Any], rel_tol: float) -> bool:
    """minerva's rounded measurements: within max(rel_tol, half a unit in the gold's last written digit)."""
    g = next((v for v in map(_as_float, gold) if v is not None), None)
    p = next((v for v in map(_as_float, pred) if v is not None), None)
    if g is None or p is None:
        return False
    tol = rel_tol * abs(g)
    m = _DECIMAL_GOLD_RE.match(gold_text)
    if m:
        decimals = len(m.group(2) or "")
        exponent = int(m.group(3) or 0)
        tol = max(tol, 0.5 * 10.0 ** (exponent - decimals))
    return abs(p - g) <= tol


def math_verdict(response: str, ground_truth: str, *, rel_tol: float = 0.0, timeout_s: int = MATH_TIMEOUT_S) -> float:
    """1 if the response's final answer equals the gold (math-verify, order gold-then-prediction), else 0.

    Raises `GoldParseError` when the gold yields no mathematical object. `rel_tol > 0` adds the numeric tolerance.
    """
    gold = _gold_cached(ground_truth)
    if not gold:
        raise GoldParseError(f"ground truth {ground_truth[:80]!r} does not parse as math (math-verify)")
    pred = _extract_prediction(response, timeout_s)
    if not pred:
        return 0.0
    if verify(list(gold), pred, timeout_seconds=_timeout(timeout_s)):
        return 1.0
    return 1.0 if rel_tol > 0 and _numeric_close(ground_truth, gold, pred, rel_tol) else 0.0
