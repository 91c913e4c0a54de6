"""SFT demonstrations written by the offline `rule` teacher: four-block answers that are right by construction.

The paper warm-starts with teacher answers, best of nine by social welfare (paper.md §3). Offline we cannot run a
32B teacher, so the rule teacher writes, for each training row, what the row itself tells:

* a payoff matrix consistent with the row: an ambiguous question makes clarifying (VQ_CQ) pay, a harmful request
  makes a safe redirect (DQ_DA: refuse and offer a safe alternative) pay, a clear question makes a direct answer
  (DQ_DA) pay, a writing request makes a draft plus one follow-up question (DQ_AQ) pay; values vary per row (seeded
  noise, one decimal) and LLM and user payoffs differ, as the payoff term rewards;
* with `ambiguity="hedge"`, every question of the ambiguity family (ambiguous or not) makes a hedge (DQ_AQ) pay: ask
  whether the common reading is the one meant, then answer it. Why: whether an Ambig-QA question is ambiguous is the
  dataset's label, which the prompt does not show (telling the two apart takes world knowledge), so a policy that
  learns "ambiguous -> CQ, clear -> DA" from the prompt alone can only learn their majority, DA. The hedge is the
  action the judge rates good handling under both labels (an ambiguous question gets its clarifying question, a clear
  one its answer), so it is the label-free optimum a model can learn from what it sees: issue 13's non-DA share;
* a `<thinking>` that opens with the scenario's situation sentence, then one of its reasons (seeded): one fixed
  opening per scenario, so a small model commits to the situation once, from the prompt, rather than mixing
  sentences of two scenarios (which it did with two sentences in random order, and then acted on the wrong one);
* an `<analyze>` derived by `gtalign.game` from that matrix (frontier and chosen cell, by the configured rule);
* a `<response>` that acts on the chosen action with the ground truth (the boxed answer, one clarifying question
  naming the meanings, a refusal with a safe alternative, the start of the ideal text);
* optionally (`demonstrate_steered`), the same row as pricing steering leaves it: the same prompt and thinking, the
  matrix edited by a steering cost edit that moves its optimum (a hedge's, which the user's per-word cost makes not
  worth its extra words), the solver's analysis of the edited matrix and a response doing its optimum's action. In
  the one-row recipe a prompt's response could follow the prompt alone; the steered copy is the only thing that
  teaches it to read the analysis, which is what a steered answer must do (issue 13; the tiny model learns it in
  320 SFT steps, not in 160: docs/sft_on_the_tiny_model.md).

Every demonstration passes the strict parser (`check_strict`) or `demonstrate` raises: a teacher bug must never
become training data.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from gtalign.game import PayoffMatrix, WelfareRule, optimal_cell, pareto_frontier, split_cell
from gtalign.protocol import check_strict, render_analyze, render_completion, response_action
from gtalign.sources import AMBIGUITY_LABELS
from gtalign.steering.config import Edit

# Base matrices (LLM, user) per scenario, non-negative so every welfare rule applies: the target cell is the clear
# optimum under sum and product rules alike, and a second frontier cell trades user welfare for LLM welfare. The
# optimum leads that runner-up by about 2 in the sum: with margins under 1 a small model's numbers, blurred between
# scenarios (a clear question's DQ_AQ drifting toward the hedge's), put the runner-up first while its analysis
# names the scenario's cell (docs/sft_on_the_tiny_model.md).
_BASE: dict[str, dict[str, tuple[float, float]]] = {
    "clarify": {
        "DQ_AQ": (1.2, 1.6),
        "DQ_CQ": (2.0, 2.4),
        "DQ_DA": (0.8, 0.4),
        "VQ_AQ": (3.8, 1.7),
        "VQ_CQ": (3.4, 4.1),
        "VQ_DA": (2.9, 0.6),
    },
    "direct": {
        "DQ_AQ": (4.2, 1.8),
        "DQ_CQ": (0.9, 1.3),
        "DQ_DA": (3.8, 4.4),
        "VQ_AQ": (1.9, 2.3),
        "VQ_CQ": (1.1, 0.7),
        "VQ_DA": (2.1, 2.7),
    },
    "redirect": {
        "DQ_AQ": (2.0, 3.6),
        "DQ_CQ": (0.6, 0.3),
        "DQ_DA": (3.9, 3.4),
        "VQ_AQ": (1.1, 0.8),
        "VQ_CQ": (0.9, 0.4),
        "VQ_DA": (2.4, 1.7),
    },
    "hedge": {
        "DQ_AQ": (3.9, 4.0),
        "DQ_CQ": (1.8, 2.0),
        "DQ_DA": (4.3, 1.5),
        "VQ_AQ": (2.6, 2.4),
        "VQ_CQ": (2.3, 2.1),
        "VQ_DA": (1.2, 0.8),
    },
    "draft": {
        "DQ_AQ": (3.9, 3.8),
        "DQ_CQ": (2.2, 1.6),
        "DQ_DA": (4.2, 1.6),
        "VQ_AQ": (2.4, 2.1),
        "VQ_CQ": (2.1, 1.8),
        "VQ_DA": (1.5, 1.1),
    },
}
_THINKING = {
    "clarify": (
        "The question has several plausible readings, so it is VQ.",
        "Answering one reading risks being wrong for the user; one clarifying question resolves it cheaply.",
        "A direct answer saves tokens now but likely costs a second turn.",
    ),
    "direct": (
        "The question is clear and self-contained, so it is DQ.",
        "A direct answer is correct with low effort for the user and low token cost.",
        "A clarifying question would only add a turn.",
    ),
    "redirect": (
        "The request asks for something harmful, so complying is off the table.",
        "A plain refusal protects safety but leaves the user with nothing.",
        "Declining and offering a safe alternative serves both sides.",
    ),
    "hedge": (
        "The question may have more than one reading, and the user has not said which.",
        "Answering the likeliest reading and asking one question covers both user types.",
        "A clarifying question alone would delay the answer.",
    ),
    "draft": (
        "The writing request is clear enough to start, so it is DQ.",
        "A first draft gives the user value now; one question about tone or length refines it.",
        "Asking only questions would delay the work.",
    ),
}


@dataclass(frozen=True, slots=True)
class DemoRow:
    """What the teacher needs from a curated row."""

    source: str
    label: str  # ambiguous | unambiguous | harmful | unharmful | answer | writing
    question: str
    ground_truth: str
    answer: str | None = None


Ambiguity = Literal["label", "hedge"]


def scenario(row: DemoRow, ambiguity: Ambiguity = "label") -> str:
    """The row's scenario; `ambiguity="hedge"` gives the ambiguity family's questions the label-free hedge."""
    if ambiguity == "hedge" and row.label in AMBIGUITY_LABELS:
        return "hedge"
    if row.label == "ambiguous":
        return "clarify"
    if row.label == "harmful":
        return "redirect"
    if row.label == "writing":
        return "draft"
    return "direct"


def _matrix(kind: str, rng: random.Random, rule: WelfareRule, min_frontier: int = 2) -> PayoffMatrix:
    base = _BASE[kind]
    target = optimal_cell(PayoffMatrix.from_dict({c: {"LLM": v[0], "user": v[1]} for c, v in base.items()}), rule)
    for _ in range(16):  # noise that keeps the intended optimum (and min_frontier); a few tries suffice
        noisy = {
            c: {
                "LLM": round(max(0.0, llm + rng.uniform(-0.3, 0.3)), 1),
                "user": round(max(0.0, user + rng.uniform(-0.3, 0.3)), 1),
            }
            for c, (llm, user) in base.items()
        }
        matrix = PayoffMatrix.from_dict(noisy)
        if optimal_cell(matrix, rule) == target and len(pareto_frontier(matrix)) >= min_frontier:
            return matrix
    return PayoffMatrix.from_dict({c: {"LLM": v[0], "user": v[1]} for c, v in base.items()})


def _analyze(matrix: PayoffMatrix, rule: WelfareRule) -> str:
    return render_analyze(matrix, rule)  # one writer, shared with the steering decoder's solver mode


def _meanings(ground_truth: str) -> list[str]:
    found = re.findall(r"Meaning \d+: (.*?)(?:;|\n|$)", ground_truth)
    return [m.strip().rstrip("?") for m in found if m.strip()][:2]


def _answers(ground_truth: str) -> list[str]:
    return [a.strip() for a in re.findall(r"Answer \d+: (.*?)(?:\n|$)", ground_truth) if a.strip()][:2]


def _first_answer(row: DemoRow) -> str:
    """The answer to an ambiguity row's first reading: `Answer 0` of an ambiguous one, the answer of a clear one."""
    answers = _answers(row.ground_truth)
    if answers:
        return answers[0]
    return row.answer or row.ground_truth.partition("###")[2].strip() or row.ground_truth


def _hedge(row: DemoRow) -> str:
    """AQ for a question that may or may not be ambiguous: the question first, in one fixed wording (a 4M-parameter
    model cannot copy the readings out of the prompt), then the answer to the common reading (more than 12 words, so
    `protocol.response_action` reads answer + question, not a bare question)."""
    return (
        "Did you mean the most common reading of your question? If you did, taking the question exactly as you asked "
        f"it, the answer is {_first_answer(row)}."
    )


def _response(row: DemoRow, kind: str, action: str, max_words: int) -> str:
    if kind == "hedge" and action == "AQ":
        return _hedge(row)
    if kind == "hedge" and action == "DA":  # the hedge's answer without its question (a steered copy)
        return f"The answer is {_first_answer(row)}."
    if action == "CQ":
        meanings = _meanings(row.ground_truth)
        if len(meanings) == 2:
            return f"Do you mean {meanings[0]}, or {meanings[1]}?"
        return "Could you clarify which part or which meaning of the question you are asking about?"
    if row.label == "harmful":
        return (
            "I can't help with that, because it could cause real harm. Instead, I can share safe, legal "
            "information on the topic or point you to resources that can help."
        )
    if row.label == "answer":
        return f"The answer is $\\boxed{{{row.answer or row.ground_truth}}}$."
    if row.label == "unambiguous":
        return f"The answer is {row.answer or row.ground_truth}."
    if row.label == "writing":
        draft = " ".join(row.ground_truth.split()[:max_words])
        return f"{draft}\n\nWould you like me to adjust the tone or the length?"
    topic = " ".join(row.question.split()[:8])
    return f"Here is a helpful answer to your question about {topic}: let us go step by step."


def edited_optima(
    matrix: PayoffMatrix, edits: Sequence[Edit], rule: WelfareRule
) -> list[tuple[Edit, PayoffMatrix, str]]:
    """(edit, edited matrix, its optimum) for each of `edits` the rule can solve: an edited matrix it is not defined
    on (a negative payoff under cobb_douglas or ces: `game.welfare` raises) cannot be steered to, so it is left out."""
    out = []
    for edit in edits:
        edited = edit.transform(matrix)
        try:
            cell = optimal_cell(edited, rule)
        except ValueError as err:
            if "non-negative payoffs" not in str(err):
                raise
            continue
        out.append((edit, edited, cell))
    return out


def _draw(
    row: DemoRow, seed: int, rule: WelfareRule, ambiguity: Ambiguity, min_frontier: int
) -> tuple[str, str, PayoffMatrix]:
    """(scenario, thinking, matrix) of the row's demonstration; deterministic in (row, seed)."""
    rng = random.Random(f"{seed}:{row.source}:{row.question}")
    kind = scenario(row, ambiguity)
    matrix = _matrix(kind, rng, rule, min_frontier)
    situation, *reasons = _THINKING[kind]
    return kind, f"{situation} {rng.choice(reasons)}", matrix


def _write(
    row: DemoRow, kind: str, thinking: str, matrix: PayoffMatrix, rule: WelfareRule, max_words: int
) -> tuple[str, str]:
    """(text, response) of the demonstration showing `matrix`; raises unless the text is strict."""
    action = split_cell(optimal_cell(matrix, rule))[1]
    response = _response(row, kind, action, max_words)
    text = render_completion(thinking, matrix, _analyze(matrix, rule), response)
    strict = check_strict(text)
    if not strict.ok:
        raise ValueError(f"rule teacher wrote an invalid demonstration for {row.source}: {strict.reason}")
    return text, response


def demonstrate(
    row: DemoRow,
    *,
    seed: int,
    rule: WelfareRule | None = None,
    max_words: int = 120,
    ambiguity: Ambiguity = "label",
    min_frontier: int = 2,
) -> str:
    """One four-block demonstration for `row`; deterministic in (row, seed). The matrix keeps at least
    `min_frontier` Pareto-frontier cells (2: a trade-off in every demonstration; 1: also the one-cell frontiers the
    noise gives, as the model's own matrices have them, so that the solver's analysis of them is familiar)."""
    rule = rule or WelfareRule()
    kind, thinking, matrix = _draw(row, seed, rule, ambiguity, min_frontier)
    return _write(row, kind, thinking, matrix, rule, max_words)[0]


def demonstrate_steered(
    row: DemoRow,
    edits: Sequence[Edit],
    *,
    seed: int,
    rule: WelfareRule | None = None,
    max_words: int = 120,
    ambiguity: Ambiguity = "label",
    min_frontier: int = 2,
) -> tuple[Edit, str] | None:
    """(edit, text): `demonstrate(row)` as steering leaves it after one of `edits` that moves its optimum to another
    action (seeded choice among them), with the thinking the model wrote before the splice, the edited matrix, the
    solver's analysis and a response doing the new optimum's action; None when no edit moves it. Raises when the
    response would not read as that action: a teacher bug must not teach the response to ignore the analysis."""
    rule = rule or WelfareRule()
    kind, thinking, matrix = _draw(row, seed, rule, ambiguity, min_frontier)
    action = split_cell(optimal_cell(matrix, rule))[1]
    moved = [(e, m, c) for e, m, c in edited_optima(matrix, edits, rule) if split_cell(c)[1] != action]
    if not moved:
        return None
    edit, edited, cell = moved[random.Random(f"{seed}:{row.source}:{row.question}:steered").randrange(len(moved))]
    text, response = _write(row, kind, thinking, edited, rule, max_words)
    if response_action(response) != split_cell(cell)[1]:
        raise ValueError(
            f"rule teacher: the steered {row.source} {row.label} row {row.question[:60]!r} ({edit.name}) has no "
            f"{split_cell(cell)[1]} response"
        )
    return edit, text
