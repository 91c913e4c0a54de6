"""The four-block answer format: rendering the instruction, and reading completions two ways.

A GTAlign completion is `<thinking>…</thinking><payoff>{json}</payoff><analyze>…</analyze><response>…</response>`.

Two readers, because the project needs both:

* `read_tolerant` reproduces what the published reward code (ulab-uiuc/GTAlign, `recipe/gamellm/tasks/format.py`
  and each task's `compute_score`) accepts: the first `<tag>…</tag>` of each kind anywhere in the text, a payoff
  block that is JSON *or* a Python literal (single quotes, curly quotes, True/NaN), text before the first tag, a
  missing `<analyze>`. Its `format_ok` is the published format score: the anchored regex
  `^<thinking>.*?</thinking>\\s*<payoff>.*?</payoff>\\s*<analyze>.*?</analyze>\\s*<response>.*?</response>$`
  (DOTALL | MULTILINE, so `$` also matches before any newline) plus a payoff that parses.
* `check_strict` is the format a well-trained policy should emit: exactly the four tags, in order, each once,
  nothing outside them but whitespace, strict JSON with exactly the six keys, exactly `LLM`/`user`, finite numbers.

Both return a precise reason instead of raising, and both run in linear time: the published regex backtracks
polynomially on hostile input (thousands of repeated tags), so `format_regex_matches` computes the same language
with one left-to-right scan (earliest match of each stage suffices because later stages only need a start position
at or after the previous stage's end).
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

from gtalign.game import CELLS, PayoffMatrix, WelfareRule, optimal_cell, pareto_frontier

TAGS = ("thinking", "payoff", "analyze", "response")
REQUIRED_SUBKEYS = frozenset({"LLM", "user"})
_REQUIRED_KEYS = frozenset(CELLS)
_CURLY = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'"})
_WS = re.compile(r"\s*")
_LINE_END = "\n"


class PayoffParseError(ValueError):
    """The payoff block is not a six-cell matrix; the message says what was found."""


# ---------------------------------------------------------------------------------------------------------------
# Block extraction (linear time)
# ---------------------------------------------------------------------------------------------------------------
def extract_block(text: str, tag: str) -> str | None:
    """The first `<tag>…</tag>` (leftmost opening, nearest closing), stripped; None when absent.

    Same result as `re.search(rf"<{tag}>(.*?)</{tag}>", text, re.DOTALL).group(1).strip()`: if the leftmost
    opening tag has no closing tag after it, no later opening tag can have one either.
    """
    open_tag, close_tag = f"<{tag}>", f"</{tag}>"
    start = text.find(open_tag)
    if start < 0:
        return None
    end = text.find(close_tag, start + len(open_tag))
    if end < 0:
        return None
    return text[start + len(open_tag) : end].strip()


def _skip_ws(text: str, pos: int) -> int:
    return _WS.match(text, pos).end()


def format_regex_matches(text: str) -> bool:
    """The published anchored four-tag regex, evaluated without backtracking."""
    if not text.startswith("<thinking>"):
        return False
    pos = len("<thinking>")
    for close, nxt in (("</thinking>", "<payoff>"), ("</payoff>", "<analyze>"), ("</analyze>", "<response>")):
        while True:
            i = text.find(close, pos)
            if i < 0:
                return False
            j = _skip_ws(text, i + len(close))
            if text.startswith(nxt, j):
                pos = j + len(nxt)
                break
            pos = i + 1
    # `</response>$` with MULTILINE: the closing tag must be followed by the end of text or a newline.
    while True:
        i = text.find("</response>", pos)
        if i < 0:
            return False
        k = i + len("</response>")
        if k == len(text) or text[k] == _LINE_END:
            return True
        pos = i + 1


# ---------------------------------------------------------------------------------------------------------------
# Payoff parsing
# ---------------------------------------------------------------------------------------------------------------
def _describe(value: Any) -> str:
    r = repr(value)
    return r if len(r) <= 60 else r[:57] + "..."


def parse_payoff_tolerant(block: str) -> dict[str, dict[str, Any]]:
    """Parse a payoff block as the published reward does; raise `PayoffParseError` with the reason.

    JSON first (Python's json accepts NaN/Infinity), then curly quotes straightened and `ast.literal_eval`, the
    result round-tripped through JSON. Values keep their Python type (int, float or bool) so arithmetic on them
    matches the published code bit for bit.
    """
    s = block.strip()
    try:
        data = json.loads(s)
    except (ValueError, RecursionError) as json_error:
        try:
            data = ast.literal_eval(s.translate(_CURLY))
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            detail = "nests too deeply" if isinstance(json_error, RecursionError) else str(json_error)
            raise PayoffParseError(f"payoff is neither JSON nor a Python literal (JSON: {detail})") from None
        try:
            data = json.loads(json.dumps(data, ensure_ascii=False))
        except (TypeError, ValueError, RecursionError) as e:
            raise PayoffParseError(f"payoff literal is not JSON-representable ({e})") from None
    if not isinstance(data, dict):
        raise PayoffParseError(f"payoff must be an object with six keys, got {type(data).__name__}")
    keys = set(data)
    if keys != _REQUIRED_KEYS:
        parts = []
        if missing := _REQUIRED_KEYS - keys:
            parts.append(f"missing {sorted(missing)}")
        if extra := keys - _REQUIRED_KEYS:
            parts.append(f"extra {sorted(map(str, extra))[:6]}")
        raise PayoffParseError("payoff keys mismatch: " + "; ".join(parts))
    for cell, value in data.items():
        if not isinstance(value, dict):
            raise PayoffParseError(f"payoff[{cell!r}] must be an object, got {_describe(value)}")
        sub = set(value)
        if sub != REQUIRED_SUBKEYS:
            raise PayoffParseError(
                f"payoff[{cell!r}] must have exactly 'LLM' and 'user', got {sorted(map(str, sub))[:6]}"
            )
        for who, v in value.items():
            if not isinstance(v, int | float):
                raise PayoffParseError(f"payoff[{cell!r}][{who!r}] must be a number, got {_describe(v)}")
    return data


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name}")


def parse_payoff_strict(block: str) -> PayoffMatrix:
    """Strict JSON, exactly six keys, exactly `LLM`/`user`, finite non-boolean numbers."""
    try:
        data = json.loads(block, parse_constant=_reject_constant)
    except RecursionError:
        raise PayoffParseError("payoff JSON nests too deeply") from None
    except ValueError as e:
        raise PayoffParseError(f"payoff is not strict JSON: {e}") from None
    if not isinstance(data, dict):
        raise PayoffParseError(f"payoff must be a JSON object, got {type(data).__name__}")
    keys = set(data)
    if keys != _REQUIRED_KEYS:
        missing, extra = sorted(_REQUIRED_KEYS - keys), sorted(keys - _REQUIRED_KEYS)[:6]
        raise PayoffParseError(f"payoff keys mismatch: missing {missing}, extra {extra}")
    for cell, value in data.items():
        if not isinstance(value, dict) or set(value) != REQUIRED_SUBKEYS:
            got = sorted(value)[:6] if isinstance(value, dict) else _describe(value)
            raise PayoffParseError(f"payoff[{cell!r}] must be exactly {{'LLM', 'user'}}, got {got}")
        for who, v in value.items():
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise PayoffParseError(f"payoff[{cell!r}][{who!r}] must be a number, got {_describe(v)}")
            if not math.isfinite(v):
                raise PayoffParseError(f"payoff[{cell!r}][{who!r}] is not finite: {v}")
    return PayoffMatrix.from_dict(data)


# ---------------------------------------------------------------------------------------------------------------
# Readings
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TolerantReading:
    """What the published reward extracts from a completion.

    `error` is set exactly when the published reward would return its all-zero result.
    """

    response: str | None
    reasoning: str  # text before the first "<response>" (the reasoning-latency term measures its length)
    payoff: dict[str, dict[str, Any]] | None
    analyze: str | None
    format_ok: bool
    error: str | None
    completion_words: int = 0  # whitespace-separated words of the whole completion (the LLM length band)

    @property
    def matrix(self) -> PayoffMatrix | None:
        """The payoff as floats, when every value is finite (NaN/inf payoffs parse tolerantly but are no game)."""
        if self.payoff is None:
            return None
        try:
            data = {c: {k: float(v) for k, v in cell.items()} for c, cell in self.payoff.items()}
        except OverflowError:
            return None
        if not all(math.isfinite(v) for cell in data.values() for v in cell.values()):
            return None
        return PayoffMatrix.from_dict(data)


def read_tolerant(text: str, *, require_analyze: bool = False) -> TolerantReading:
    """Read a completion the way the published reward does.

    `require_analyze` mirrors the published out-of-domain tasks (minerva, advbench, abg-coqa), whose reward is zero
    when `<analyze>` is missing; the in-domain tasks do not look at it.
    """
    reasoning = text.split("<response>", 1)[0]
    response = extract_block(text, "response")
    analyze = extract_block(text, "analyze")
    words = len(text.split())

    def fail(reason: str, payoff: dict[str, dict[str, Any]] | None = None) -> TolerantReading:
        return TolerantReading(response, reasoning, payoff, analyze, False, reason, words)

    if response is None:
        return fail("missing <response>…</response> block")
    block = extract_block(text, "payoff")
    if block is None:
        return fail("missing <payoff>…</payoff> block")
    try:
        payoff = parse_payoff_tolerant(block)
    except PayoffParseError as e:
        return fail(str(e))
    if require_analyze and analyze is None:
        return fail("missing <analyze>…</analyze> block", payoff)
    return TolerantReading(response, reasoning, payoff, analyze, format_regex_matches(text), None, words)


@dataclass(frozen=True, slots=True)
class StrictReading:
    ok: bool
    reason: str | None
    blocks: dict[str, str]
    matrix: PayoffMatrix | None


_ANY_TAG = re.compile(r"</?(?:thinking|payoff|analyze|response)>")


def check_strict(text: str) -> StrictReading:
    """The strict format: four tags in order, each exactly once, only whitespace outside, strict payoff."""
    blocks: dict[str, str] = {}
    tags = list(_ANY_TAG.finditer(text))
    expected = [f"<{t}>" if i % 2 == 0 else f"</{t}>" for t in TAGS for i in range(2)]
    for k, want in enumerate(expected):
        if k >= len(tags):
            return StrictReading(False, f"missing {want} (found {len(tags)} of 8 tags)", blocks, None)
        got = tags[k].group()
        if got != want:
            return StrictReading(
                False, f"expected {want} as tag #{k + 1}, found {got} at char {tags[k].start()}", blocks, None
            )
    if len(tags) > 8:
        extra = tags[8]
        return StrictReading(
            False, f"unexpected {extra.group()} after </response> at char {extra.start()}", blocks, None
        )
    for k in range(0, 8, 2):
        tag = TAGS[k // 2]
        blocks[tag] = text[tags[k].end() : tags[k + 1].start()].strip()
        gap_start = 0 if k == 0 else tags[k - 1].end()
        gap = text[gap_start : tags[k].start()]
        if gap.strip():
            where = "before <thinking>" if k == 0 else f"between </{TAGS[k // 2 - 1]}> and <{tag}>"
            return StrictReading(False, f"text outside the tags {where}: {_describe(gap.strip())}", blocks, None)
        if not blocks[tag]:
            return StrictReading(False, f"<{tag}> block is empty", blocks, None)
    if tail := text[tags[7].end() :].strip():
        return StrictReading(False, f"text after </response>: {_describe(tail)}", blocks, None)
    try:
        matrix = parse_payoff_strict(blocks["payoff"])
    except PayoffParseError as e:
        return StrictReading(False, str(e), blocks, None)
    return StrictReading(True, None, blocks, matrix)


# ---------------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------------
PromptStyle = Literal["full", "compact"]
_SUM_PHRASE = "1) maximize social welfare (LLM + user)"
_WELFARE_PHRASES = {
    "sum": _SUM_PHRASE,
    "nash": "1) maximize social welfare (LLM x user)",
    "geometric": "1) maximize social welfare (sqrt(LLM x user))",
    "cobb_douglas": "1) maximize social welfare (sqrt(LLM x user))",
    "ces": "1) maximize social welfare (CES of LLM and user)",
}
COMPACT_SYSTEM = "You are a helpful assistant. Answer in four tagged blocks."
COMPACT_INSTRUCTION = (
    "Write <thinking> (which strategy fits), <payoff> (JSON: DQ_AQ, DQ_CQ, DQ_DA, VQ_AQ, VQ_CQ, VQ_DA, "
    'each {{"LLM": x, "user": y}}), <analyze> (Pareto frontier, then the cell with the highest {welfare}) and '
    "<response> (DA answers, CQ asks one question, AQ answers and asks one question)."
)
_COMPACT_WELFARE = {
    "sum": "LLM + user",
    "nash": "LLM x user",
    "geometric": "sqrt(LLM x user)",
    "cobb_douglas": "sqrt(LLM x user)",
    "ces": "CES welfare",
}


@cache
def _resource(name: str) -> str:
    return resources.files("gtalign.resources.prompts").joinpath(name).read_text(encoding="utf-8")


def full_instruction(rule: WelfareRule | None = None) -> str:
    """The published four-block instruction, verbatim unless a non-sum welfare rule is asked for."""
    text = _resource("instruction_full.txt")
    kind = (rule or WelfareRule()).kind
    return text if kind == "sum" else text.replace(_SUM_PHRASE, _WELFARE_PHRASES[kind])


def system_prompt(style: PromptStyle = "full") -> str:
    return _resource("system.txt") if style == "full" else COMPACT_SYSTEM


def render_user_message(
    question: str,
    *,
    style: PromptStyle = "full",
    initial_question: str | None = None,
    rule: WelfareRule | None = None,
) -> str:
    """The user turn as the datasets write it (`full`), or a short form a tiny model can read (`compact`)."""
    if style == "compact":
        kind = (rule or WelfareRule()).kind
        return COMPACT_INSTRUCTION.format(welfare=_COMPACT_WELFARE[kind]) + "\nQuestion: " + question
    prefix = f"The user's initial question isQuestion: {initial_question}" if initial_question else ""
    lead = "Now you need to answer the user's most recent question. "
    return f"{prefix}{lead}{full_instruction(rule)}Question: {question}"


def render_messages(
    question: str, *, style: PromptStyle = "full", initial_question: str | None = None, rule: WelfareRule | None = None
) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": system_prompt(style)},
        {
            "role": "user",
            "content": render_user_message(question, style=style, initial_question=initial_question, rule=rule),
        },
    ]


def apply_prompt_style(chat: list[dict[str, str]], style: str) -> list[dict[str, str]]:
    """Wrap a bare chat in the prompt the policy was trained on, unless it already carries a system turn.

    The policy learned the four-block format under a specific system prompt and user-turn instruction
    (`curate.prompt_style`); a client that sends just "What is 2+2?" should get the same framing, whichever server it
    calls (`gtalign serve`, the MLflow pyfunc). A chat with its own system message is sent verbatim, as is everything
    when the style is "none".
    """
    if style == "none" or any(t["role"] == "system" for t in chat) or chat[-1]["role"] != "user":
        return chat
    rendered = render_messages(chat[-1]["content"], style=style)  # type: ignore[arg-type]
    return [rendered[0], *chat[:-1], rendered[1]]


def render_payoff(matrix: PayoffMatrix) -> str:
    """Compact strict JSON, one decimal place as the instruction asks, keys in the prompt's order."""
    return json.dumps(
        {c: {"LLM": round(p.llm, 1), "user": round(p.user, 1)} for c, p in ((c, matrix[c]) for c in CELLS)},
        separators=(", ", ": "),
    )


_FRONTIER, _DOMINATED, _CHOSEN = "Pareto frontier: ", " are dominated.", " Chosen: "  # render_analyze's phrases


def _highest(kind: str) -> str:
    return f" Highest welfare by the {kind} rule: "


def render_analyze(matrix: PayoffMatrix, rule: WelfareRule) -> str:
    """The `<analyze>` text the solver writes: the Pareto frontier, the dominated cells, the optimum under `rule`.

    One writer for the rule teacher's demonstrations and for the steering decoder's solver mode, so a policy
    trained on the demonstrations reads, after a solver splice, exactly the kind of analysis it learnt to write.
    Raises ValueError when `rule` has no optimum on `matrix` (`gtalign.game.optimal_cell`).
    """
    frontier = pareto_frontier(matrix)
    best = optimal_cell(matrix, rule)
    dominated = [c for c in CELLS if c not in frontier]
    pts = ", ".join(f"{c} ({matrix[c].llm:.1f}, {matrix[c].user:.1f})" for c in frontier)
    why = f" {', '.join(dominated)}{_DOMINATED}" if dominated else ""
    return f"{_FRONTIER}{pts}.{why}{_highest(rule.kind)}{best}.{_CHOSEN}{best}."


def fixed_strings() -> tuple[str, ...]:
    """The text every compact-style prompt and rendered completion repeats: the compact system prompt and instruction
    (one per welfare rule), the eight tags, each cell's key and the separators as `render_payoff` writes them, the
    cells and the phrases of `render_analyze`.

    A tokenizer trained here holds each as one token (`gtalign.modeling.train_tokenizer`): a row of the tiny
    preset's demonstrations is then 224 tokens instead of 399 (a completion 153 instead of 236), so SFT, RL rollouts,
    evaluation and steering do the same work with 44% fewer tokens. Only the tokenizer changes how the format is cut;
    the text, and so every reader and the reward, is the same.
    """
    rules = tuple(_COMPACT_WELFARE)
    prompts = [COMPACT_SYSTEM, *(render_user_message("", style="compact", rule=WelfareRule(k)) for k in rules)]
    tags = [f"<{t}>" for t in TAGS] + [f"</{t}>" for t in TAGS]
    payoff = [f'"{c}": {{"LLM": ' for c in CELLS] + [', "user": ', "}, ", "}}"]
    analyze = [_FRONTIER, _DOMINATED, _CHOSEN, *map(_highest, rules)]
    return (*prompts, *tags, *payoff, *CELLS, *analyze)


def render_through_analyze(matrix: PayoffMatrix, analyze: str) -> str:
    """The completion from the payoff's JSON through the opening `<response>` tag, laid out as `render_completion`
    lays it out (it is built from this): the text the steering decoder splices when the solver writes `<analyze>`."""
    return f"{render_payoff(matrix)}</payoff><analyze>{analyze}</analyze><response>"


def render_completion(thinking: str, matrix: PayoffMatrix, analyze: str, response: str) -> str:
    return f"<thinking>{thinking}</thinking><payoff>{render_through_analyze(matrix, analyze)}{response}</response>"


# ---------------------------------------------------------------------------------------------------------------
# What the analysis names and what the response does (for the exact matrix-consistency measure)
# ---------------------------------------------------------------------------------------------------------------
_CELL_RE = re.compile(r"\b(DQ|VQ)[_ ]?(AQ|CQ|DA)\b")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def named_cell(analyze: str | None) -> str | None:
    """The cell the `<analyze>` block settles on: the last cell key it names (the prompt asks it to end on it)."""
    if not analyze:
        return None
    found = _CELL_RE.findall(analyze)
    return f"{found[-1][0]}_{found[-1][1]}" if found else None


def response_action(response: str | None, *, max_answer_words_for_cq: int = 12) -> str | None:
    """Classify a response as DA (no question), CQ (essentially only a question) or AQ (answer plus a question).

    A cheap structural reading, deliberately simple so it is exact and testable: questions are sentences ending
    in '?'; the rest of the text is the answer part.
    """
    if response is None:
        return None
    sentences = [s.strip() for s in _SENTENCE_END.split(response.strip()) if s.strip()]
    questions = [s for s in sentences if s.endswith("?")]
    if not questions:
        return "DA"
    answer_words = sum(len(s.split()) for s in sentences if not s.endswith("?"))
    return "CQ" if answer_words <= max_answer_words_for_cq else "AQ"
