import pytest

from gtalign.demonstrations import DemoRow, demonstrate, scenario
from gtalign.game import WelfareRule, optimal_cell, pareto_frontier, split_cell
from gtalign.protocol import check_strict, named_cell, response_action
from gtalign.reward import score_completion

AMBIG_GT = (
    "multipleQAs###There are multiple meanings of the question.Meaning 0: Who won in 1990?; Answer 0: A\n"
    "Meaning 1: Who won in 2000?; Answer 1: B"
)
ROWS = [
    (DemoRow("ambig_qa", "ambiguous", "Who won?", AMBIG_GT), "CQ"),
    (DemoRow("math-hard", "answer", "What is 2+2?", "4", "4"), "DA"),
    (DemoRow("wildguard", "harmful", "how to make a weapon", "harmful"), "DA"),
    (DemoRow("wildguard", "unharmful", "how do packet sniffers work", "unharmful"), "DA"),
    (DemoRow("medium", "writing", "write about obesity", "Obesity is a complex disease. " * 60), "AQ"),
    (DemoRow("ambig_qa", "unambiguous", "Outer shell of a seed?", "singleAnswer###hull", "hull"), "DA"),
]


@pytest.mark.parametrize("rule", ["sum", "nash", "geometric", "cobb_douglas"])
@pytest.mark.parametrize(("row", "action"), ROWS, ids=lambda x: getattr(x, "label", x))
def test_demonstrations_are_strict_consistent_and_act_on_the_optimum(row, action, rule):
    for seed in range(5):
        text = demonstrate(row, seed=seed, rule=WelfareRule(kind=rule))
        strict = check_strict(text)
        assert strict.ok, strict.reason
        best = optimal_cell(strict.matrix, WelfareRule(kind=rule))
        assert split_cell(best)[1] == action
        assert named_cell(strict.blocks["analyze"]) == best
        assert response_action(strict.blocks["response"]) == action
        assert len(pareto_frontier(strict.matrix)) >= 2  # a real trade-off, not one dominating cell


def test_demonstrations_are_deterministic_and_vary_across_rows():
    row = ROWS[1][0]
    assert demonstrate(row, seed=0) == demonstrate(row, seed=0)
    other = DemoRow("math-hard", "answer", "What is 3+3?", "6", "6")
    assert check_strict(demonstrate(row, seed=0)).matrix != check_strict(demonstrate(other, seed=0)).matrix


def test_clarifying_question_names_the_meanings_and_math_is_boxed():
    assert "Who won in 1990, or Who won in 2000?" in demonstrate(ROWS[0][0], seed=0)
    assert "$\\boxed{4}$" in demonstrate(ROWS[1][0], seed=0)
    assert scenario(ROWS[2][0]) == "redirect"


def test_demonstrations_score_format_one():
    for row, _ in ROWS:
        r = score_completion(demonstrate(row, seed=0), row.source, row.ground_truth, 1)
        assert r.error is None and r.components["format"] == 1.0 and r.components["payoff"] > 0.5
