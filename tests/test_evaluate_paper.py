"""The transcription of the paper's Tables 3-7 and how the report places it beside our numbers."""

import json
from importlib import resources

from gtalign.evaluate.generate import Generation
from gtalign.evaluate.metrics import METRICS, ScoredRow, evaluate_model
from gtalign.evaluate.paper import PAPER_ALIASES, load_paper_results, paper_key
from gtalign.evaluate.pareto import PairwiseComparison
from gtalign.evaluate.report import flat_metrics, render_markdown
from gtalign.reward import RewardResult
from gtalign.reward.consistency import Consistency
from gtalign.sources import SOURCES

TABLE6_FIELDS = {"coverage_a", "coverage_b", "hypervolume_a", "hypervolume_b", "regret_a", "regret_b"}
TABLE6_FIELDS |= {"a_wins", "b_wins", "ties"}


def test_paper_results_are_typed_and_complete():
    doc = json.loads(resources.files("gtalign.resources").joinpath("paper_results.json").read_text())
    records = doc["results"]
    # 4 sources x 7 models x 5 + 2 x 7 x 4 + 6 x 3 x 4 + 12 pairs x 9 + 6 x (3 + 3 + 4)
    assert len(records) == 140 + 56 + 72 + 108 + 60
    for r in records:
        assert r["table"] in {"3", "4", "5", "6", "7"} and r["model"] in doc["models"] and r["source"] in SOURCES
        assert r["metric"] in (TABLE6_FIELDS if r["table"] == "6" else METRICS), r
        assert isinstance(r["value"], int | float)
        assert ("opponent" in r) == (r["table"] == "6")
    keys = [(r["table"], r["model"], r["source"], r["metric"], r.get("opponent")) for r in records]
    assert len(keys) == len(set(keys))


def test_spot_checks_against_the_paper():
    p = load_paper_results()
    assert p.get("3", "gtalign", "math-hard", "total_len") == 1638
    assert p.get("3", "user_reward", "wildguard", "format") == 0.077
    assert p.get("4", "sft", "ambig_qa", "ambig_handle") == 0.2133
    assert (
        p.get("5", "gtalign", "math-hard", "welfare") == 0.5 and p.get("5", "llm_reward", "ambig_qa", "llm") == 0.877
    )
    assert p.get("6", "gtalign", "medium", "coverage_b", "user_reward") == 0.0176
    assert p.get("6", "gtalign", "medium", "hypervolume_b", "user_reward") == 0.0763
    assert p.get("6", "gtalign", "wildguard", "a_wins", "linear") == 220
    assert (
        p.get("7", "gtalign", "advbench", "welfare") == 0.769 and p.get("7", "linear", "math-hard", "matrix") == 0.934
    )
    assert p.get("5", "qwen3-32b", "math-hard", "welfare") is None  # not in Table 5
    assert p.name("gtalign") == "+GTAlign (Cobb-Douglas)"


def test_model_names_map_to_the_papers_methods():
    assert paper_key("cobb_douglas") == "gtalign" and paper_key("SFT") == "sft" and paper_key("mine") is None
    assert paper_key("mine", {"mine": "linear"}) == "linear"
    assert set(PAPER_ALIASES.values()) <= set(load_paper_results().models)


def _row(uid: str, source: str, user: float, llm: float) -> ScoredRow:
    g = Generation(uid, source, "answer", "sft", [], "", "4", response_tokens=5, total_tokens=10)
    r = RewardResult((user * llm) ** 0.5, user, llm, 1.0, 1.0, {"answer_user": 1.0, "answer_llm": 1.0}, None)
    return ScoredRow(g, r, True, None, True, None, Consistency("DQ_DA", "DQ_DA", "DA", True, True))


def test_report_puts_the_paper_row_under_ours_and_paper_only_methods_after():
    ev = evaluate_model("sft", [_row("1", "math-hard", 0.25, 1.0), _row("2", "math-hard", 0.25, 1.0)], resamples=0)
    pc = PairwiseComparison("math-hard", "gtalign", "sft", 2, 0, 1.0, 0.5, 0.3, 0.2, 0.0, 0.1, 1, 0, 1, 2)
    md = render_markdown([ev], [pc])
    t5 = md.split("## Table 5")[1].split("###")[0].splitlines()
    rows = [line for line in t5 if line.startswith("| ")][1:]
    assert rows[0] == "| **sft** | 0.500 / – / – / – | 0.250 / – / – / – | 1.000 / – / – / – |"
    paper_sft = "0.261 / 0.386 / 0.248 / 0.478 | 0.223 / 0.290 / 0.236 / 0.515 | 0.317 / 0.522 / 0.263 / 0.462"
    assert rows[1] == f"| *paper: +SFT* | {paper_sft} |"
    assert rows[2].startswith("| *paper: Qwen2.5-3B-Instruct*") and len(rows) == 7
    t6 = md.split("## Table 6")[1].split("## Table 7")[0]
    assert "| Math | **gtalign** vs **sft** | 2 | 100.0% vs 50.0% | 0.300 vs 0.200 | 0.000 vs 0.100 | 1/0/1 |" in t6
    assert t6.count("*paper: ") == 12  # no GTAlign-vs-baseline pair of ours: all 12 published rows follow
    flat = flat_metrics([ev], [pc])
    assert flat["sft/math-hard/welfare"] == 0.5 and flat["sft/welfare_mean"] == 0.5
    assert (
        flat["pareto/math-hard/gtalign_vs_sft/coverage_a"] == 1.0 and flat["pareto/math-hard/gtalign_vs_sft/ties"] == 1
    )
