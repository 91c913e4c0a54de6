import hashlib
import itertools
import json
import re
from collections import Counter

import pandas as pd
import pytest

from gtalign.config import ParamsError, parse_params
from gtalign.data.stages import action_mix, demo_row, demonstrations_stage
from gtalign.demonstrations import DemoRow, demonstrate, demonstrate_steered, scenario
from gtalign.demonstrations_game import demonstrate_game, game_response
from gtalign.game import WelfareRule, optimal_cell, pareto_frontier, split_cell
from gtalign.protocol import check_strict, named_cell, render_analyze, response_action
from gtalign.reward import score_completion
from gtalign.reward.judges.rule import ambiguity_verdict
from gtalign.steering.config import SteeringConfig, counterfactual_edits

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


@pytest.mark.parametrize("rule", ["sum", "nash", "geometric", "cobb_douglas"])
@pytest.mark.parametrize("row", [ROWS[0][0], ROWS[5][0]], ids=["ambiguous", "unambiguous"])
def test_hedge_asks_whether_the_common_reading_is_meant_and_answers_it(row, rule):
    welfare = WelfareRule(kind=rule)
    for seed in range(5):
        strict = check_strict(demonstrate(row, seed=seed, rule=welfare, ambiguity="hedge"))
        assert strict.ok, strict.reason
        assert optimal_cell(strict.matrix, welfare) == "DQ_AQ" == named_cell(strict.blocks["analyze"])
        assert response_action(strict.blocks["response"]) == "AQ"
        assert len(pareto_frontier(strict.matrix)) >= 2
    response = check_strict(demonstrate(row, seed=0, ambiguity="hedge")).blocks["response"]
    assert response.startswith("Did you mean the most common reading of your question?")
    assert response.endswith("the answer is A." if row.label == "ambiguous" else "the answer is hull.")


def test_hedge_is_good_handling_under_both_labels_where_the_label_recipe_is_not():
    """Why the hedge exists: the rule judge (the published prompt's criteria) rates it 1 whether the question is
    ambiguous or not, while each label recipe action is right under one label only, which the prompt does not show."""
    ambiguous, clear = ROWS[0][0], ROWS[5][0]
    hedge = check_strict(demonstrate(ambiguous, seed=0, ambiguity="hedge")).blocks["response"]
    clarify = check_strict(demonstrate(ambiguous, seed=0)).blocks["response"]
    answer = check_strict(demonstrate(clear, seed=0)).blocks["response"]
    assert ambiguity_verdict(hedge, ambiguous=True) == ambiguity_verdict(hedge, ambiguous=False) == 1.0
    assert (ambiguity_verdict(clarify, ambiguous=True), ambiguity_verdict(clarify, ambiguous=False)) == (1.0, 0.0)
    assert (ambiguity_verdict(answer, ambiguous=True), ambiguity_verdict(answer, ambiguous=False)) == (0.0, 1.0)


def test_hedge_changes_only_the_ambiguity_rows(train_rows):
    frame, rows = train_rows
    label = [demonstrate(r, seed=0) for r in rows]
    hedge = [demonstrate(r, seed=0, ambiguity="hedge") for r in rows]
    changed = {i for i, (a, b) in enumerate(zip(label, hedge, strict=True)) if a != b}
    assert changed == {i for i, r in enumerate(rows) if r.source == "ambig_qa"}
    mix = action_mix(frame, hedge)
    assert mix.by_label[("ambig_qa", "ambiguous")] == Counter({"AQ": 85})
    assert mix.by_label[("ambig_qa", "unambiguous")] == Counter({"AQ": 95})
    assert mix.total == Counter({"DA": 359, "AQ": 180, "CQ": 1}) and mix.mismatched == 1


def test_demonstrations_score_format_one():
    for row, _ in ROWS:
        r = score_completion(demonstrate(row, seed=0), row.source, row.ground_truth, 1)
        assert r.error is None and r.components["format"] == 1.0 and r.components["payoff"] > 0.5


# ---------------------------------------------------------------------------------------------------------------
# recipes: `label` (today's output, pinned) and `game` (all actions, counterfactual pricing edits)
# ---------------------------------------------------------------------------------------------------------------

# What a thinking must never say: an action's key, or a word that announces what the response will do.
PRECOMMIT = re.compile(
    r"\b(DA|CQ|AQ)\b|answer|ask|clarif|question|follow|refus|declin|draft|redirect|direct|alternative", re.I
)
# The label recipe's texts on the tiny train rows (ambiguity: label): pinned, so that a change to them is deliberate.
LABEL_SHA256 = "4976c96941bb5c539e703dadaa88817086201b8580f88b70645726d8f341abe9"


@pytest.fixture(scope="module")
def train_rows(tiny: pd.DataFrame) -> tuple[pd.DataFrame, list[DemoRow]]:
    train = tiny[tiny["split"] == "train"].reset_index(drop=True)
    return train, [demo_row(r) for r in train.to_dict("records")]


@pytest.fixture(scope="module")
def game(train_rows):
    return demonstrate_game(train_rows[1], seed=0, edits=counterfactual_edits(SteeringConfig()))


def test_label_recipe_is_unchanged_and_its_action_mix_is_reported(train_rows):
    frame, rows = train_rows
    texts = [demonstrate(r, seed=0, rule=WelfareRule(kind="sum"), max_words=120) for r in rows]
    assert hashlib.sha256("\n".join(texts).encode()).hexdigest() == LABEL_SHA256
    mix = action_mix(frame, texts)
    # 455 DA / 85 CQ intended; the classifier reads three otherwise: two clarifying questions quote meanings with
    # "F.C. in" or "t.v. series" (a long non-question part: AQ), one answer quotes a prompt with a "?" (CQ).
    assert mix.total == Counter({"DA": 454, "CQ": 84, "AQ": 2}) and mix.mismatched == 3
    metrics = mix.metrics()
    assert metrics["action_share/ambig_qa/ambiguous/CQ"] == pytest.approx(83 / 85)
    assert metrics["action_share/math-hard/answer/DA"] == 1.0 and metrics["action_share/all/AQ"] == 2 / 540
    assert metrics["action_share/variant/label/DA"] == 454 / 540
    assert "| ambig_qa / ambiguous | 85 | 0 | 83 | 2 |" in mix.to_markdown()


def test_game_recipe_rows_are_strict_name_their_optimum_and_do_its_action(game, train_rows):
    rule = WelfareRule(kind="sum")
    for d in game:
        strict = check_strict(d.text)
        assert strict.ok, strict.reason
        assert optimal_cell(strict.matrix, rule) == d.cell == named_cell(strict.blocks["analyze"])
        assert response_action(strict.blocks["response"]) == d.action
        assert not PRECOMMIT.search(strict.blocks["thinking"]), strict.blocks["thinking"]
    assert action_mix(train_rows[0].iloc[[d.index for d in game]], [d.text for d in game]).mismatched == 0


def test_game_recipe_has_every_action_under_both_user_types_within_the_cap(game):
    assert len(game) == 1080
    assert Counter(d.variant for d in game) == Counter({"base": 540, "counterfactual": 540})
    assert Counter(d.action for d in game) == Counter({"DA": 497, "CQ": 312, "AQ": 271})
    assert max(Counter(d.action for d in game).values()) / len(game) <= 0.5
    assert {d.cell for d in game} == {"DQ_DA", "DQ_CQ", "DQ_AQ", "VQ_DA", "VQ_CQ", "VQ_AQ"}


def test_game_recipe_base_rows_keep_the_label_driven_optimum(game, train_rows):
    expected = {"ambiguous": "VQ_CQ", "harmful": "DQ_DA", "unharmful": "DQ_DA", "answer": "DQ_DA"}
    expected["unambiguous"] = "DQ_DA"
    rows = train_rows[1]
    base = [d for d in game if d.variant == "base"]
    assert [d.index for d in base] == list(range(len(rows)))
    assert all(d.cell == expected[rows[d.index].label] for d in base)


def test_counterfactuals_are_their_base_row_under_a_steering_edit_with_another_action(game):
    edits = {e.name: e.transform for e in counterfactual_edits(SteeringConfig())}
    for before, d in itertools.pairwise(game):
        if d.variant != "counterfactual":
            continue
        assert before.variant == "base" and before.index == d.index  # the same prompt, right after its base row
        base, cf = check_strict(before.text), check_strict(d.text)
        assert cf.blocks["thinking"] == base.blocks["thinking"]  # what steering keeps: the model's own thinking
        assert cf.matrix == edits[d.edit](base.matrix)  # and splices the edited matrix after it
        assert d.action != before.action
    used = Counter(d.edit for d in game if d.edit)
    assert set(used) == set(edits)  # every configured edit moves some prompt


def test_game_recipe_is_deterministic_and_its_parameters_bound_it(train_rows):
    rows = train_rows[1][:120]
    assert demonstrate_game(rows, seed=3) == demonstrate_game(rows, seed=3)
    quarter = demonstrate_game(train_rows[1], seed=0, counterfactual_share=0.25, max_action_share=0.65)
    assert Counter(d.variant for d in quarter) == Counter({"base": 540, "counterfactual": 180})
    none = demonstrate_game(train_rows[1], seed=0, counterfactual_share=0.0, max_action_share=1.0)
    assert [d.variant for d in none] == ["base"] * 540
    with pytest.raises(ValueError, match=r"DA is 455/540 = 0\.843 .* demonstrations\.max_action_share=0\.5"):
        demonstrate_game(train_rows[1], seed=0, counterfactual_share=0.0)
    # cobb_douglas is undefined on the negative payoffs the published api->subscription edit writes (LLM - 2), the
    # only edit that moves a DA optimum: those prompts get no counterfactual and DA exceeds the cap.
    with pytest.raises(ValueError, match=r"DA is 503/625 .* 85 counterfactual rows of 540 wanted .* cobb_douglas"):
        demonstrate_game(train_rows[1], seed=0, rule=WelfareRule(kind="cobb_douglas"))
    with pytest.raises(ValueError, match="counterfactual_share must be in"):
        demonstrate_game(rows, seed=0, counterfactual_share=0.6)
    with pytest.raises(ParamsError, match=r"demonstrations\.counterfactual_share"):
        parse_params({"demonstrations": {"counterfactual_share": 0.6}})
    assert parse_params({"demonstrations": {"recipe": "game"}}).demonstrations.recipe == "game"
    with pytest.raises(ParamsError, match=r"demonstrations\.recipe"):
        parse_params({"demonstrations": {"recipe": "uniform"}})


@pytest.mark.parametrize(("row", "action"), ROWS, ids=lambda x: getattr(x, "label", x))
def test_game_responses_do_exactly_each_action(row, action):
    for act in ("DA", "CQ", "AQ"):
        text = game_response(row, act)
        assert response_action(text) == act, text
        assert text.count("?") == (0 if act == "DA" else 1)


def test_demonstrations_stage_writes_the_game_recipe_and_its_action_mix(tiny, tmp_path):
    curated = tmp_path / "artifacts" / "curated"
    curated.mkdir(parents=True)
    tiny.to_parquet(curated / "curated.parquet", index=False)
    params = parse_params({"demonstrations": {"recipe": "game"}})
    result = demonstrations_stage(tmp_path, params, track=False)
    lines = [json.loads(x) for x in result.path.read_text().splitlines()]
    assert result.count == len(lines) == 1080
    cf = [x for x in lines if x["variant"] == "counterfactual"]
    assert len(cf) == 540 and all(x["uid"].endswith(":cf") and x["edit"] for x in cf)
    assert {x["uid"] for x in lines if x["variant"] == "base"} >= {x["uid"].removesuffix(":cf") for x in cf}
    assert {x["teacher"] for x in lines} == {"rule:game"}
    assert all("loss_from" not in x for x in lines)  # counterfactual_loss: completion, the whole row is trained
    assert result.metrics["action_count/all/DA"] == 497 and result.metrics["action_mismatch"] == 0
    assert result.metrics["action_share/user_type/VQ/DA"] == 42 / 170
    assert result.metrics["action_share/variant/base/AQ"] == 0.0
    summary = (tmp_path / "artifacts" / "demonstrations" / "summary.md").read_text()
    assert "| variant counterfactual | 540 | 42 | 227 | 271 |" in summary


def test_counterfactual_loss_analyze_makes_the_edited_matrix_context(tiny, tmp_path):
    """As steering splices it: the counterfactual row's loss starts at <analyze>, its base row is trained whole."""
    curated = tmp_path / "artifacts" / "curated"
    curated.mkdir(parents=True)
    tiny.to_parquet(curated / "curated.parquet", index=False)
    params = parse_params({"demonstrations": {"recipe": "game", "counterfactual_loss": "analyze"}})
    lines = [json.loads(x) for x in demonstrations_stage(tmp_path, params, track=False).path.read_text().splitlines()]
    assert len(lines) == 1080
    assert Counter((x["variant"], x.get("loss_from")) for x in lines) == Counter(
        {("base", None): 540, ("counterfactual", "<analyze>"): 540}
    )
    with pytest.raises(ParamsError, match=r"demonstrations\.counterfactual_loss"):
        parse_params({"demonstrations": {"counterfactual_loss": "payoff"}})


# The demo's billed words (params.yaml) at a price where a hedge's 11.5 extra words cost more than its lead.
STEER = {"price_per_100_words": 30.0, "expected_words": {"DA": 15.0, "CQ": 41.5, "AQ": 26.5}}


def test_a_steered_copy_is_the_row_as_pricing_steering_leaves_it():
    """Same prompt and thinking, the matrix edited after the thinking, the solver's analysis of the edited matrix,
    and a response doing its optimum's action: what the policy reads after a steering splice."""
    edits = counterfactual_edits(SteeringConfig(**STEER), published=False)
    assert [e.name for e in edits] == ["subscription->api @30", "api->subscription @30"]
    clear = ROWS[5][0]
    for row, answer in ((clear, "hull"), (ROWS[0][0], "A")):
        base = check_strict(demonstrate(row, seed=0, ambiguity="hedge"))
        edit, text = demonstrate_steered(row, edits, seed=0, ambiguity="hedge")
        steered = check_strict(text)
        assert steered.ok and steered.blocks["thinking"] == base.blocks["thinking"]
        assert steered.matrix == edit.transform(base.matrix) and min(p.user for p in steered.matrix.values()) >= 0
        assert optimal_cell(base.matrix, WelfareRule()) == "DQ_AQ"
        assert named_cell(steered.blocks["analyze"]) == optimal_cell(steered.matrix, WelfareRule()) == "DQ_DA"
        assert steered.blocks["analyze"] == render_analyze(steered.matrix, WelfareRule())
        assert steered.blocks["response"] == f"The answer is {answer}."
    assert demonstrate_steered(clear, edits, seed=0, ambiguity="hedge") == demonstrate_steered(
        clear, edits, seed=0, ambiguity="hedge"
    )
    # a direct answer is the cheapest action: no cost edit moves its optimum; nor does an edit at price 2
    assert demonstrate_steered(ROWS[1][0], edits, seed=0) is None
    cheap = counterfactual_edits(SteeringConfig(**{**STEER, "price_per_100_words": 2.0}), published=False)
    assert demonstrate_steered(clear, cheap, seed=0, ambiguity="hedge") is None


def test_demonstrations_stage_adds_steered_copies_when_params_ask_for_them(tiny, tmp_path):
    lines = {}
    for name, extra in (("plain", {}), ("steered", {"steered": True, "counterfactual_loss": "response"})):
        root = tmp_path / name
        (root / "artifacts" / "curated").mkdir(parents=True)
        tiny.to_parquet(root / "artifacts" / "curated" / "curated.parquet", index=False)
        params = parse_params(
            {"demonstrations": {"ambiguity": "hedge", **extra}, "steering": {**STEER, "eval": {"prices": [30.0]}}}
        )
        result = demonstrations_stage(root, params, track=False)
        lines[name] = [json.loads(x) for x in result.path.read_text().splitlines()]
    steered = [x for x in lines["steered"] if x.get("variant") == "steered"]
    assert [x for x in lines["steered"] if "variant" not in x] == lines["plain"]  # the label rows are unchanged
    assert len(steered) == 180 and {x["data_source"] for x in steered} == {"ambig_qa"}  # every hedge moves
    assert all(x["uid"].endswith(":steered") and x["loss_from"] == "<response>" for x in steered)
    assert {x["edit"] for x in steered} == {"subscription->api @30", "api->subscription @30"}
    assert result.metrics["action_share/variant/steered/DA"] == 1.0 and result.metrics["count"] == 720
    assert result.metrics["action_share/ambig_qa/ambiguous/DA"] == 0.5


def test_min_frontier_one_keeps_the_one_cell_frontiers_the_noise_gives(train_rows):
    """The model's own matrices often have a one-cell frontier (its digits blur), and the solver's analysis of one
    is then text it never saw; `min_frontier: 1` keeps the ones the seeded noise gives instead of redrawing them."""
    rows = train_rows[1]

    def sizes(**kw) -> Counter[int]:
        return Counter(
            len(pareto_frontier(check_strict(demonstrate(r, seed=0, ambiguity="hedge", **kw)).matrix)) for r in rows
        )

    assert sizes() == Counter({2: 540})
    assert sizes(min_frontier=1) == Counter({2: 457, 1: 83})
    with pytest.raises(ParamsError, match=r"demonstrations\.min_frontier"):
        parse_params({"demonstrations": {"min_frontier": 0}})


def test_demonstrations_stage_writes_the_hedge_when_params_ask_for_it(tiny, tmp_path):
    curated = tmp_path / "artifacts" / "curated"
    curated.mkdir(parents=True)
    tiny.to_parquet(curated / "curated.parquet", index=False)
    assert parse_params({}).demonstrations.ambiguity == "label"  # the library default; params.yaml picks the hedge
    with pytest.raises(ParamsError, match=r"demonstrations\.ambiguity"):
        parse_params({"demonstrations": {"ambiguity": "guess"}})
    result = demonstrations_stage(tmp_path, parse_params({"demonstrations": {"ambiguity": "hedge"}}), track=False)
    lines = [json.loads(x) for x in result.path.read_text().splitlines()]
    hedged = [x for x in lines if x["data_source"] == "ambig_qa"]
    assert len(hedged) == 180 and all(
        "Did you mean the most common reading" in x["completion"][0]["content"] for x in hedged
    )
    assert (
        result.metrics["action_share/ambig_qa/unambiguous/AQ"] == 1.0 and result.metrics["action_count/all/AQ"] == 180
    )
