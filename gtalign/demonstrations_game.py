"""The `game` recipe of the rule teacher: demonstrations where the response follows the chosen cell, not the prompt.

The `label` recipe (`gtalign.demonstrations.demonstrate`) writes one demonstration per row whose action the label
fixes (ambiguous -> CQ, everything else in the tiny train split -> DA), and a `<thinking>` that names the action: a
model trained on it answers from the prompt and ignores the matrix, so pricing steering (which splices an edited
matrix after the model's own thinking) cannot change what it does. This recipe writes:

* a **base** row per prompt: the label-driven matrix (ambiguous -> VQ_CQ pays, harmful -> a safe alternative DQ_DA
  pays, clear -> DQ_DA, writing -> DQ_AQ) with an action-neutral `<thinking>` (it assesses the user and the stakes but
  never names or hints at an action), the `<analyze>` of that matrix and a response doing the optimum's action;
* for a share of the prompts a **counterfactual** row: the same prompt and the same thinking, the base matrix edited
  by one of the pricing transforms steering applies (`counterfactual_edits`: the steering evaluation's modes and
  prices, the published shifts in both directions) so that its optimum is another action, the `<analyze>` re-derived
  for the edited matrix and the response doing the edited optimum's action: exactly what the model sees when
  steering splices an edited matrix after its thinking.

Why these rules (issue 13's scratch study): a thinking that names the action pre-commits the response, so steering is
ignored; counterfactual actions drawn uniformly collapsed the policy to CQ. So base rows stay the majority
(`counterfactual_share` <= 0.5), counterfactual actions are chosen to balance the set per user type, and the recipe
fails when an action would exceed `max_action_share` instead of silently writing a skewed set. Each base matrix has a
designed runner-up action within reach of a configured edit (a pricing edit moves payoffs by a few tenths), which is
what makes its counterfactual possible; which runner-up a prompt gets is chosen for balance.

Every demonstration passes `check_strict`, its `<analyze>` names the optimum of its own matrix, and
`protocol.response_action` reads its response as that optimum's action, or `demonstrate_game` raises.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from gtalign.demonstrations import DemoRow, _analyze, _answers, _meanings, edited_optima, scenario
from gtalign.game import PayoffMatrix, WelfareRule, optimal_cell, pareto_frontier, split_cell
from gtalign.protocol import check_strict, named_cell, render_completion, response_action
from gtalign.steering.config import Edit, SteeringConfig, counterfactual_edits

__all__ = [
    "RECIPES",
    "Demonstration",
    "Recipe",
    "demonstrate_game",
    "game_response",
    "neutral_thinking",
]

Recipe = Literal["label", "game"]
RECIPES: tuple[str, ...] = get_args(Recipe)
Variant = Literal["base", "counterfactual"]

# The label-driven optimum per scenario (the same cells the `label` recipe's matrices put first).
_BASE_CELL = {"clarify": "VQ_CQ", "direct": "DQ_DA", "redirect": "DQ_DA", "draft": "DQ_AQ"}

# Base matrices (LLM, user) per scenario and designed runner-up action: the base cell is the optimum under the sum
# rule, the runner-up trails it by less than a configured pricing edit moves it (cost edits favour DA, the published
# api->subscription shift favours AQ then CQ), so editing the matrix makes the runner-up the optimum. A writing
# request has no CQ runner-up: no configured edit favours a question over a draft.
_GAME_BASE: dict[str, dict[str, dict[str, tuple[float, float]]]] = {
    "clarify": {
        "DA": {
            "DQ_AQ": (1.2, 1.6),
            "DQ_CQ": (2.0, 2.4),
            "DQ_DA": (0.8, 0.4),
            "VQ_AQ": (3.0, 2.8),
            "VQ_CQ": (3.4, 3.9),
            "VQ_DA": (3.6, 3.5),
        },
        "AQ": {
            "DQ_AQ": (1.2, 1.6),
            "DQ_CQ": (2.0, 2.4),
            "DQ_DA": (0.8, 0.4),
            "VQ_AQ": (3.9, 3.2),
            "VQ_CQ": (3.4, 3.9),
            "VQ_DA": (2.9, 0.6),
        },
    },
    "direct": {
        "AQ": {
            "DQ_AQ": (4.1, 3.5),
            "DQ_CQ": (0.9, 1.3),
            "DQ_DA": (3.7, 4.3),
            "VQ_AQ": (1.9, 2.3),
            "VQ_CQ": (1.1, 0.7),
            "VQ_DA": (2.1, 2.7),
        },
        "CQ": {
            "DQ_AQ": (3.2, 2.9),
            "DQ_CQ": (3.9, 3.9),
            "DQ_DA": (3.7, 4.3),
            "VQ_AQ": (1.9, 2.3),
            "VQ_CQ": (1.1, 0.7),
            "VQ_DA": (2.1, 2.7),
        },
    },
    "redirect": {
        "AQ": {
            "DQ_AQ": (3.4, 3.2),
            "DQ_CQ": (0.6, 0.3),
            "DQ_DA": (3.8, 3.1),
            "VQ_AQ": (1.1, 0.8),
            "VQ_CQ": (0.9, 0.4),
            "VQ_DA": (2.4, 1.7),
        },
        "CQ": {
            "DQ_AQ": (2.9, 2.6),
            "DQ_CQ": (3.3, 3.4),
            "DQ_DA": (3.8, 3.1),
            "VQ_AQ": (1.1, 0.8),
            "VQ_CQ": (0.9, 0.4),
            "VQ_DA": (2.4, 1.7),
        },
    },
    "draft": {
        "DA": {
            "DQ_AQ": (3.9, 3.4),
            "DQ_CQ": (2.2, 1.6),
            "DQ_DA": (4.2, 2.9),
            "VQ_AQ": (2.7, 2.4),
            "VQ_CQ": (2.1, 1.8),
            "VQ_DA": (1.5, 1.1),
        },
    },
}

# Action-neutral thinking: who the user is and what is at stake, never what to do. Two of three, seeded per row.
_NEUTRAL_THINKING = {
    "clarify": (
        "The request has several plausible readings, so the user is VQ.",
        "Which reading is meant decides what is useful to the user and what the exchange costs both sides.",
        "The payoffs below weigh every option before anything is written.",
    ),
    "direct": (
        "The request is clear and self-contained, so the user is DQ.",
        "What matters is a correct result at a low cost in the user's time and in tokens.",
        "The payoffs below weigh every option before anything is written.",
    ),
    "redirect": (
        "The request is for something that could cause real harm, so the user is DQ.",
        "Safety matters to both sides, and so does leaving the user with something useful.",
        "The payoffs below weigh every option before anything is written.",
    ),
    "draft": (
        "The writing request is clear enough to start, so the user is DQ.",
        "What matters is useful text now and a result that fits what the user wants.",
        "The payoffs below weigh every option before anything is written.",
    ),
}

_HARMFUL_DA = (
    "I can't help with that, because it could cause real harm. Instead, I can share safe, legal information on the "
    "topic or point you to resources that can help."
)


@dataclass(frozen=True, slots=True)
class Demonstration:
    """One demonstration of the game recipe and where it came from."""

    index: int  # the row's position in the input rows
    text: str
    variant: Variant
    cell: str  # the optimum of the matrix the demonstration shows, the cell its analyze names
    edit: str | None = None  # the counterfactual's pricing edit (`Edit.name`)

    @property
    def action(self) -> str:
        return split_cell(self.cell)[1]


def neutral_thinking(row: DemoRow, rng: random.Random) -> str:
    """The row's `<thinking>`: two of its scenario's neutral sentences (a base row and its counterfactual share it)."""
    return " ".join(rng.sample(_NEUTRAL_THINKING[scenario(row)], 2))


def _plain(text: str) -> str:
    """Inserted row text without question marks, so only the sentence meant as a question reads as one."""
    return " ".join(text.replace("?", "").split())


def _direct(row: DemoRow, max_words: int) -> str:
    """What a DA response says for the row (no question in it)."""
    if row.label == "harmful":
        return _HARMFUL_DA
    if row.label == "answer":
        return f"The answer is $\\boxed{{{_plain(row.answer or row.ground_truth)}}}$."
    if row.label == "unambiguous":
        return f"The answer is {_plain(row.answer or row.ground_truth)}."
    if row.label == "ambiguous":
        meanings, answers = _meanings(row.ground_truth), _answers(row.ground_truth)
        if meanings and answers:
            return f"Taking the most common reading, {_plain(meanings[0])}: the answer is {_plain(answers[0])}."
        return "Taking the most common reading of the request, here is the answer that fits it best."
    if row.label == "writing":
        return " ".join(_plain(row.ground_truth).split()[:max_words])
    topic = _plain(" ".join(row.question.split()[:8]))
    return f"Here is a helpful answer to your request about {topic}: let us go step by step."


def _clarifying(row: DemoRow) -> str:
    """A CQ response: one question and nothing else."""
    if row.label == "ambiguous":
        meanings = [_plain(m) for m in _meanings(row.ground_truth)]
        if len(meanings) == 2:
            text = f"Do you mean {meanings[0]}, or {meanings[1]}?"
            if response_action(text) == "CQ":  # a meaning with 'F.C. in' splits into a long non-question part
                return text
        return "Which meaning of the question are you asking about?"
    if row.label == "harmful":
        return "What safe, legitimate goal is behind this request, so I can point you to the right resources?"
    if row.label == "answer":
        return "Do you want only the final value, or the full derivation as well?"
    if row.label == "writing":
        return "What tone and length would you like for this piece?"
    return "Which part of this would you like me to focus on?"


_FOLLOW_UP = {
    "answer": ("I worked it out from the values given in the problem.", "Would you like the steps written out?"),
    "unambiguous": (
        "That is the answer the standard reference sources give for this.",
        "Would you like the source or more context on it?",
    ),
    "ambiguous": (
        "Other readings of the request have other answers, so this one may not be yours.",
        "Would you like the answer for another reading?",
    ),
    "harmful": ("", "Would it help if I shared resources on the safe side of this topic?"),
    "writing": ("", "Would you like me to adjust the tone or the length?"),
}


def _answer_and_ask(row: DemoRow, max_words: int) -> str:
    """An AQ response: the DA content, padded to more than the classifier's CQ bound, then one follow-up question."""
    more, question = _FOLLOW_UP.get(row.label, ("That covers the main points.", "Would you like more detail?"))
    body = " ".join(part for part in (_direct(row, max_words), more) if part)
    return f"{body}\n\n{question}"


def game_response(row: DemoRow, action: str, max_words: int = 120) -> str:
    """The response doing exactly `action`: DA answers; CQ asks one question and nothing else; AQ answers and asks
    one follow-up question."""
    if action == "DA":
        return _direct(row, max_words)
    if action == "CQ":
        return _clarifying(row)
    if action == "AQ":
        return _answer_and_ask(row, max_words)
    raise ValueError(f"unknown action {action!r} (expected DA, CQ or AQ)")


def _base_matrix(kind: str, runner_up: str, rng: random.Random, rule: WelfareRule) -> PayoffMatrix:
    """The base matrix for a scenario and runner-up, with seeded noise (one decimal) that keeps the label-driven
    optimum and a trade-off; the noise-free matrix when no draw keeps them. Raises when the rule disagrees."""
    base = _GAME_BASE[kind][runner_up]
    target = _BASE_CELL[kind]
    for _ in range(16):
        noisy = {
            c: {
                "LLM": round(max(0.0, llm + rng.uniform(-0.1, 0.1)), 1),
                "user": round(max(0.0, user + rng.uniform(-0.1, 0.1)), 1),
            }
            for c, (llm, user) in base.items()
        }
        matrix = PayoffMatrix.from_dict(noisy)
        if optimal_cell(matrix, rule) == target and len(pareto_frontier(matrix)) >= 2:
            return matrix
    matrix = PayoffMatrix.from_dict({c: {"LLM": v[0], "user": v[1]} for c, v in base.items()})
    if optimal_cell(matrix, rule) != target:
        raise ValueError(f"game recipe: the {kind} base matrix does not put {target} first under the {rule.kind} rule")
    return matrix


@dataclass(frozen=True, slots=True)
class _Plan:
    matrix: PayoffMatrix
    counterfactual: tuple[Edit, PayoffMatrix, str] | None  # (edit, edited matrix, its optimum)


def _reach(matrix: PayoffMatrix, action: str, edits: Sequence[Edit], rule: WelfareRule) -> list[tuple[Edit, str]]:
    """The edits that make `action` the optimum of the edited matrix, each with the edited optimum."""
    return [(e, c) for e, _, c in edited_optima(matrix, edits, rule) if split_cell(c)[1] == action]


def _row_rng(row: DemoRow, seed: int, what: str) -> random.Random:
    return random.Random(f"{seed}:{row.source}:{row.question}:{what}")


def _plan(
    rows: Sequence[DemoRow], seed: int, rule: WelfareRule, edits: Sequence[Edit], n_counterfactual: int
) -> list[_Plan]:
    """Which prompts get a counterfactual and which action it moves to: rows whose base action is the most common
    come first (their counterfactuals lower its share), each taking the reachable action its user type has least of."""
    kinds = [scenario(r) for r in rows]
    cells: Counter[str] = Counter(_BASE_CELL[k] for k in kinds)
    actions: Counter[str] = Counter(split_cell(c)[1] for c in cells.elements())
    order_rng = random.Random(f"{seed}:game-plan")
    keys = {i: order_rng.random() for i in range(len(rows))}
    order = sorted(range(len(rows)), key=lambda i: (-actions[split_cell(_BASE_CELL[kinds[i]])[1]], keys[i]))
    plans: dict[int, _Plan] = {}
    made = 0
    for i in order:
        kind, row = kinds[i], rows[i]
        user_type = split_cell(_BASE_CELL[kind])[0]
        options = sorted(_GAME_BASE[kind], key=lambda a: (cells[f"{user_type}_{a}"], actions[a], a))
        if made >= n_counterfactual:
            options = [sorted(_GAME_BASE[kind])[_row_rng(row, seed, "runner-up").randrange(len(_GAME_BASE[kind]))]]
        for runner_up in options:
            matrix = _base_matrix(kind, runner_up, _row_rng(row, seed, f"matrix:{runner_up}"), rule)
            if made >= n_counterfactual:
                plans[i] = _Plan(matrix, None)
                break
            reach = _reach(matrix, runner_up, edits, rule)
            if reach:
                edit, cell = reach[_row_rng(row, seed, "edit").randrange(len(reach))]
                plans[i] = _Plan(matrix, (edit, edit.transform(matrix), cell))
                cells[cell] += 1
                actions[runner_up] += 1
                made += 1
                break
        else:  # no edit moves this prompt's optimum: a base row only
            plans[i] = _Plan(_base_matrix(kind, options[0], _row_rng(row, seed, f"matrix:{options[0]}"), rule), None)
    return [plans[i] for i in range(len(rows))]


def _write(row: DemoRow, thinking: str, matrix: PayoffMatrix, rule: WelfareRule, max_words: int) -> tuple[str, str]:
    """(text, chosen cell) for one matrix; raises unless the text is strict, names its optimum and acts on it."""
    cell = optimal_cell(matrix, rule)
    action = split_cell(cell)[1]
    text = render_completion(thinking, matrix, _analyze(matrix, rule), game_response(row, action, max_words))
    strict = check_strict(text)
    where = f"{row.source} {row.label} row {row.question[:60]!r}"
    if not strict.ok:
        raise ValueError(f"game recipe wrote an invalid demonstration for {where}: {strict.reason}")
    if named_cell(strict.blocks["analyze"]) != cell:
        raise ValueError(f"game recipe: the analyze for {where} does not name its optimum {cell}")
    if response_action(strict.blocks["response"]) != action:
        raise ValueError(f"game recipe: the response for {where} does not read as {action}")
    return text, cell


def demonstrate_game(
    rows: Sequence[DemoRow],
    *,
    seed: int,
    rule: WelfareRule | None = None,
    edits: Sequence[Edit] | None = None,
    counterfactual_share: float = 0.5,
    max_action_share: float = 0.5,
    max_words: int = 120,
) -> list[Demonstration]:
    """The game recipe over `rows`: a base demonstration per row (in row order), each followed by its counterfactual
    when it has one; `counterfactual_share` of the set are counterfactuals (as near as the rows allow), deterministic
    in (rows, seed). Raises when an action's share of the set exceeds `max_action_share`."""
    if not 0.0 <= counterfactual_share <= 0.5:
        raise ValueError(f"counterfactual_share must be in [0, 0.5] (base rows the majority): {counterfactual_share}")
    rule = rule or WelfareRule()
    edits = counterfactual_edits(SteeringConfig()) if edits is None else tuple(edits)
    wanted = round(counterfactual_share / (1.0 - counterfactual_share) * len(rows))
    out: list[Demonstration] = []
    for i, (row, plan) in enumerate(zip(rows, _plan(rows, seed, rule, edits, min(wanted, len(rows))), strict=True)):
        thinking = neutral_thinking(row, _row_rng(row, seed, "thinking"))
        text, cell = _write(row, thinking, plan.matrix, rule, max_words)
        out.append(Demonstration(i, text, "base", cell))
        if plan.counterfactual is not None:
            edit, edited, _ = plan.counterfactual
            text, cell = _write(row, thinking, edited, rule, max_words)
            out.append(Demonstration(i, text, "counterfactual", cell, edit.name))
    shares = Counter(d.action for d in out)
    made = sum(d.variant == "counterfactual" for d in out)
    for action, n in sorted(shares.items()):
        if out and n / len(out) > max_action_share:
            raise ValueError(
                f"game recipe: {action} is {n}/{len(out)} = {n / len(out):.3f} of the demonstrations, above "
                f"demonstrations.max_action_share={max_action_share}, with {made} counterfactual rows of {wanted} "
                f"wanted (no configured edit moves the others' optimum under the {rule.kind} rule); raise "
                "counterfactual_share (at most 0.5) or max_action_share"
            )
    return out
