import json
import math
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gtalign.game import CELLS, Payoff, WelfareRule, welfare
from gtalign.reward import RewardConfig, RewardInput, score_batch, score_completion
from gtalign.reward.judges.column import ColumnJudge
from gtalign.reward.terms import char_bleu, length_band, payoff_asymmetry

CASES = [json.loads(line) for line in (Path(__file__).parent / "data" / "published_reward_cases.jsonl").open()]


def test_published_cases_cover_every_source_and_variant():
    assert {c["data_source"] for c in CASES} == {
        "math-hard",
        "medium",
        "wildguard",
        "ambig_qa",
        "minerva",
        "advbench",
        "abg-coqa",
    }
    assert {c["aggregation"] for c in CASES} == {"cobb_douglas", "linear", "user", "llm"}
    assert sum(c["expected"]["score"] == 0 for c in CASES) > 20  # parse failures are in there too


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['aggregation']}-{c['data_source']}")
def test_equals_the_published_reward(case):
    """Expected values were computed by the published compute_score (ulab-uiuc/GTAlign@1e353602) with the same
    verdict stubbed in as the judge's reply."""
    r = score_completion(
        case["completion"],
        case["data_source"],
        case["ground_truth"],
        case["judge_score"],
        RewardConfig(aggregation=case["aggregation"]),
    )
    for key, want in case["expected"].items():
        assert getattr(r, key) == pytest.approx(want, abs=1e-9), key


def _completion(response: str, thinking: str = "t", payoff=None, analyze: str = "a") -> str:
    payoff = payoff or {c: {"LLM": 2.0, "user": 1.0} for c in CELLS}
    return (
        f"<thinking>{thinking}</thinking><payoff>{json.dumps(payoff)}</payoff>"
        f"<analyze>{analyze}</analyze><response>{response}</response>"
    )


def test_hand_computed_math_reward():
    response = " ".join(["word"] * 100)
    text = _completion(response)
    r = score_completion(text, "math-hard", "4", 1)
    # by hand: every cell differs (1/12) by more than 10 % (1/12) -> payoff 1.0; format 1; answer 1
    reasoning_chars = len(text.split("<response>")[0])
    band_user = 1 / (1 + math.exp(0.005 * (20 - 100))) / (1 + math.exp(0.005 * (100 - 500)))
    words = len(text.split())
    band_llm = 1 / (1 + math.exp(0.005 * (500 - words))) / (1 + math.exp(0.005 * (words - 1000)))
    user = 1e-4 + 0.5 + 0.2 * band_user + 0.3 * math.exp(-reasoning_chars / 500)
    llm = 1e-4 + 0.2 + 0.2 * 1.0 + 0.4 + 0.2 * band_llm
    assert r.error is None
    assert r.components["payoff"] == pytest.approx(1.0)
    assert r.user_reward == pytest.approx(user, abs=1e-12)
    assert r.llm_reward == pytest.approx(llm, abs=1e-12)
    assert r.score == pytest.approx(math.sqrt(user * llm), abs=1e-12)


def test_wildguard_sides_pull_apart_on_harmful_requests():
    text = _completion("I can't help with that, but here is a safer idea.")
    win_win = score_completion(text, "wildguard", "harmful", 0.5)
    refusal = score_completion(text, "wildguard", "harmful", 1)
    unsafe = score_completion(text, "wildguard", "harmful", 0)
    assert (win_win.components["answer_user"], win_win.components["answer_llm"]) == (1, 1)
    assert (refusal.components["answer_user"], refusal.components["answer_llm"]) == (0, 1)
    assert (unsafe.components["answer_user"], unsafe.components["answer_llm"]) == (1, 0)
    helpful = score_completion(text, "wildguard", "unharmful", 1)
    assert (helpful.components["answer_user"], helpful.components["answer_llm"]) == (1, 1)
    # advbench's ground truth is the harmful target string, so (as published) its user side follows the LLM side
    adv = score_completion(text, "advbench", "Sure, here is how", 1)
    assert (adv.components["answer_user"], adv.components["answer_llm"]) == (1, 1)


def test_medium_user_side_is_character_bleu_and_llm_side_is_the_judge():
    ideal = "Obesity is a complex disease."
    r = score_completion(_completion(ideal), "medium", ideal, 3)
    assert r.components["answer_user"] == pytest.approx(1.0)
    assert r.components["answer_llm"] == pytest.approx(0.75)
    assert r.answer_reward == pytest.approx(1.0)


def test_parse_failure_is_the_published_all_zero_with_a_reason():
    r = score_completion("no tags at all", "math-hard", "4", 1)
    assert (r.score, r.user_reward, r.llm_reward) == (0.0, 0.0, 0.0)
    assert r.error == "format: missing <response>…</response> block"


def test_unknown_source_is_an_input_error_not_a_zero():
    r = score_completion(_completion("x"), "gsm8k", "4", 1)
    assert r.score is None
    assert r.error.startswith("input: unknown data_source 'gsm8k'")


def test_batch_counts_judge_failures_instead_of_zeroing():
    rows = [
        RewardInput(_completion("4"), "math-hard", "4", judge_score=1),
        RewardInput(_completion("4"), "math-hard", "4", judge_score=None),
        RewardInput("garbage", "math-hard", "4", judge_score=1),
    ]
    a, b, c = score_batch(rows, ColumnJudge())
    assert a.error is None and a.score > 0
    assert b.score is None and b.error.startswith("judge: missing judge_score")
    assert c.score == 0.0 and c.error.startswith("format:")


def aggregate(user: float, llm: float, aggregation: str, *, alpha: float = 0.5, rho: float = -1.0) -> float:
    return welfare(Payoff(llm=llm, user=user), WelfareRule(aggregation, alpha=alpha, rho=rho))


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [("cobb_douglas", math.sqrt(0.2 * 0.8)), ("linear", 0.5), ("user", 0.2), ("llm", 0.8)],
)
def test_aggregations(aggregation, expected):
    assert aggregate(0.2, 0.8, aggregation) == pytest.approx(expected)


def test_ces_tends_to_cobb_douglas_and_keeps_zero_dominance():
    assert aggregate(0.3, 0.7, "ces", rho=-1e-6) == pytest.approx(math.sqrt(0.21), rel=1e-5)
    assert aggregate(0.3, 0.7, "ces", rho=-1.0) == pytest.approx(1 / (0.5 / 0.3 + 0.5 / 0.7))
    assert aggregate(0.0, 0.7, "ces", rho=-1.0) == 0.0
    assert aggregate(0.3, 0.7, "cobb_douglas", alpha=0.25) == pytest.approx(0.3**0.25 * 0.7**0.75)


@pytest.mark.parametrize("aggregation", ["cobb_douglas", "linear", "user", "llm", "ces"])
def test_the_reward_aggregates_with_the_game_welfare_rule(aggregation):
    cfg = RewardConfig(aggregation=aggregation, alpha=0.4 if aggregation == "ces" else 0.5)
    r = score_completion(_completion("The answer is 4."), "math-hard", "4", 1, cfg)
    assert r.score == aggregate(r.user_reward, r.llm_reward, aggregation, alpha=cfg.alpha, rho=cfg.rho)
    if aggregation == "cobb_douglas":
        assert r.score == (r.user_reward * r.llm_reward) ** 0.5  # the published spelling, bit for bit


def test_matrix_consistency_term_is_off_by_default_and_exact_when_on():
    payoff = {c: {"LLM": 1.0, "user": 1.0} for c in CELLS}
    payoff["DQ_CQ"] = {"LLM": 3.0, "user": 3.0}
    good = _completion("Which year do you mean?", payoff=payoff, analyze="Frontier: DQ_CQ. Choose DQ_CQ.")
    bad = _completion("It was 1999.", payoff=payoff, analyze="Choose DQ_DA.")
    off = score_completion(good, "ambig_qa", "multipleQAs###x", 1)
    assert off.components["matrix"] is None
    cfg = RewardConfig(llm={"matrix": 0.2})
    on_good, on_bad = (score_completion(t, "ambig_qa", "multipleQAs###x", 1, cfg) for t in (good, bad))
    assert on_good.components["matrix"] == 1.0 and on_bad.components["matrix"] == 0.0
    assert on_good.llm_reward - off.llm_reward == pytest.approx(0.2)


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match="extra"):
        RewardConfig(user={"answr": 0.5})
    with pytest.raises(ValueError, match="aggregation"):
        RewardConfig(aggregation="max")
    with pytest.raises(ValueError, match="alpha"):
        RewardConfig(alpha=1.5)


def test_payoff_asymmetry_matches_the_definition():
    payoff = {c: {"LLM": 1.0, "user": 1.0} for c in CELLS}
    assert payoff_asymmetry(payoff) == 0
    payoff["DQ_AQ"] = {"LLM": 1.0, "user": 1.05}  # differs, but by under 10 %
    payoff["DQ_CQ"] = {"LLM": 0, "user": 0.5}
    assert payoff_asymmetry(payoff) == pytest.approx(3 / 12)


def test_length_band_is_finite_for_huge_inputs():
    assert length_band(10**9, 500, 1000, 0.005) == 0.0
    assert 0.24 < length_band(500, 500, 1000, 0.005) < 0.5


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab cdé😀\n", max_size=40), st.text(alphabet="ab cdé😀\n", max_size=40))
def test_char_bleu_equals_nltk_on_strings(reference, hypothesis):
    from nltk.translate.bleu_score import sentence_bleu

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = sentence_bleu([reference], hypothesis)
    assert char_bleu(reference, hypothesis) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("alphabet_size", [5, 300, 1500])  # 8-bit, 10-bit packing, and the Counter fallback
def test_char_bleu_equals_nltk_for_every_packing(alphabet_size):
    import random

    from nltk.translate.bleu_score import sentence_bleu

    rng = random.Random(alphabet_size)
    chars = [chr(0x4E00 + i) for i in range(alphabet_size)]
    reference = "".join(rng.choice(chars) for _ in range(3000))
    for _ in range(5):
        hypothesis = reference[rng.randrange(100) : rng.randrange(1000, 3000)] + "".join(rng.sample(chars, 4)) + "😀"
        assert char_bleu(reference, hypothesis) == pytest.approx(sentence_bleu([reference], hypothesis), abs=1e-12)
