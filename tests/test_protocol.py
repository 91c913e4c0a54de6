import json
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gtalign.game import CELLS, PayoffMatrix, WelfareRule
from gtalign.protocol import (
    check_strict,
    extract_block,
    format_regex_matches,
    named_cell,
    parse_payoff_tolerant,
    read_tolerant,
    render_analyze,
    render_completion,
    render_messages,
    render_payoff,
    render_through_analyze,
    render_user_message,
    response_action,
)

PUBLISHED_FORMAT = re.compile(
    r"^<thinking>.*?</thinking>\s*<payoff>.*?</payoff>\s*<analyze>.*?</analyze>\s*<response>.*?</response>$",
    re.DOTALL | re.MULTILINE,
)
PAYOFF = {c: {"LLM": float(i), "user": float(5 - i)} for i, c in enumerate(CELLS)}
GOOD = (
    f"<thinking>t</thinking><payoff>{json.dumps(PAYOFF)}</payoff><analyze>pick DQ_AQ</analyze>"
    "<response>Hello there.</response>"
)


def test_extract_block_first_complete_pair():
    assert extract_block("x<a> 1 </a><a>2</a>", "a") == "1"
    assert extract_block("<a>open only", "a") is None
    assert extract_block("</a><a>z</a>", "a") == "z"
    assert extract_block("<a>outer<a>inner</a>", "a") == "outer<a>inner"


@pytest.mark.parametrize(
    "text",
    [
        GOOD,
        GOOD + "\ntrailing line",  # MULTILINE `$` matches before a newline
        GOOD + " trailing",
        " " + GOOD,
        GOOD.replace("</thinking>", "</thinking>\n \n"),
        "<thinking></thinking><payoff></payoff><analyze></analyze><response></response>",
        "<thinking>a</thinking><payoff>b</payoff>x</thinking><payoff>c</payoff><analyze>d</analyze><response>e</response>",
        "<thinking>a</thinking><payoff>b</payoff><analyze>c</analyze><response>d</response>e</response>",
        "<thinking>a</thinking><payoff>b</payoff><analyze>c</analyze><response>d</response>e</response>\n",
        "<thinking>a</thinking> <response>",
    ],
)
def test_format_regex_equals_published_regex(text):
    assert format_regex_matches(text) == bool(PUBLISHED_FORMAT.match(text))


TAG_SOUP = st.lists(
    st.sampled_from(
        [
            "<thinking>",
            "</thinking>",
            "<payoff>",
            "</payoff>",
            "<analyze>",
            "</analyze>",
            "<response>",
            "</response>",
            " ",
            "\n",
            "x",
            "é",
        ]
    ),
    max_size=30,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(TAG_SOUP)
def test_format_regex_equals_published_regex_on_tag_soup(text):
    assert format_regex_matches(text) == bool(PUBLISHED_FORMAT.match(text))


@settings(max_examples=200, deadline=None)
@given(TAG_SOUP, st.sampled_from(["thinking", "payoff", "analyze", "response"]))
def test_extract_block_equals_published_regex(text, tag):
    m = re.search(rf"<{tag}>(.*?)</{tag}>", text, flags=re.DOTALL)
    assert extract_block(text, tag) == (m.group(1).strip() if m else None)


def test_tolerant_accepts_what_the_published_reward_accepts():
    literal = GOOD.replace(json.dumps(PAYOFF), repr(PAYOFF))
    curly = GOOD.replace(json.dumps(PAYOFF), json.dumps(PAYOFF).replace('"DQ_AQ"', "“DQ_AQ”"))
    for text in (GOOD, literal, "Sure! " + GOOD, GOOD.replace("<analyze>pick DQ_AQ</analyze>", "")):
        r = read_tolerant(text)
        assert r.error is None and r.payoff is not None
    assert read_tolerant(curly).error is None
    assert read_tolerant("Sure! " + GOOD).format_ok is False
    assert read_tolerant(GOOD).format_ok is True
    assert read_tolerant(GOOD).reasoning == GOOD.split("<response>")[0]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (GOOD.replace("<response>", ""), "missing <response>"),
        (GOOD.replace("</payoff>", ""), "missing <payoff>"),
        (GOOD.replace('"VQ_DA"', '"VQ_XX"'), "payoff keys mismatch: missing ['VQ_DA']; extra ['VQ_XX']"),
        (GOOD.replace('"user": 0.0', '"User": 0.0'), "payoff['VQ_DA'] must have exactly 'LLM' and 'user'"),
        (GOOD.replace('"user": 0.0', '"user": "high"'), "payoff['VQ_DA']['user'] must be a number"),
        (GOOD.replace(json.dumps(PAYOFF), "[1, 2]"), "payoff must be an object with six keys, got list"),
        (GOOD.replace(json.dumps(PAYOFF), "{oops"), "payoff is neither JSON nor a Python literal"),
    ],
)
def test_tolerant_failures_name_the_reason(text, reason):
    r = read_tolerant(text)
    assert r.error is not None and reason in r.error


def test_tolerant_keeps_nan_and_bool_like_the_published_parser():
    text = GOOD.replace('"LLM": 0.0', '"LLM": NaN').replace('"LLM": 1.0', '"LLM": true')
    r = read_tolerant(text)
    assert r.error is None
    assert r.payoff["DQ_AQ"]["LLM"] != r.payoff["DQ_AQ"]["LLM"]  # NaN kept
    assert r.payoff["DQ_CQ"]["LLM"] is True
    assert r.matrix is None  # but it is no game: not all finite


def test_ood_sources_require_analyze():
    text = GOOD.replace("<analyze>pick DQ_AQ</analyze>", "")
    assert read_tolerant(text).error is None
    assert read_tolerant(text, require_analyze=True).error == "missing <analyze>…</analyze> block"


def test_strict_accepts_the_canonical_form():
    r = check_strict(GOOD)
    assert r.ok, r.reason
    assert r.matrix == PayoffMatrix.from_dict(PAYOFF)
    assert r.blocks["response"] == "Hello there."


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Sure! " + GOOD, "text outside the tags before <thinking>"),
        (GOOD + " bye", "text after </response>"),
        (GOOD.replace("<analyze>pick DQ_AQ</analyze>", ""), "expected <analyze> as tag #5, found <response>"),
        (GOOD.replace("<thinking>t</thinking>", "<thinking>t <payoff></thinking>"), "expected </thinking> as tag #2"),
        (GOOD + "<response>again</response>", "unexpected <response> after </response>"),
        (GOOD.replace("<thinking>t</thinking>", "<thinking> </thinking>"), "<thinking> block is empty"),
        (GOOD.replace(json.dumps(PAYOFF), repr(PAYOFF)), "payoff is not strict JSON"),
        (GOOD.replace('"LLM": 0.0', '"LLM": NaN'), "payoff is not strict JSON: non-finite number NaN"),
        (GOOD.replace('"LLM": 0.0', '"LLM": 1e400'), "payoff['DQ_AQ']['LLM'] is not finite"),
        (GOOD.replace('"LLM": 0.0', '"LLM": true'), "payoff['DQ_AQ']['LLM'] must be a number, got True"),
        (GOOD.replace('"user": 0.0', '"user": 0.0, "x": 1'), "payoff['VQ_DA'] must be exactly {'LLM', 'user'}"),
        (GOOD.replace('"VQ_DA"', '"VQ_XX"'), "payoff keys mismatch: missing ['VQ_DA'], extra ['VQ_XX']"),
        (GOOD.replace("</response>", ""), "missing </response>"),
    ],
)
def test_strict_failures_name_the_reason(text, reason):
    r = check_strict(text)
    assert not r.ok
    assert reason in r.reason


@pytest.mark.parametrize(
    "payoff_block",
    [
        "[" * 2000 + "]" * 2000,
        "{" * 2000 + "}" * 2000,
        '{"DQ_AQ": ' * 2000 + "1" + "}" * 2000,
        "x" * 200_000,
        json.dumps(PAYOFF) + "\x00" * 1000,
        "(" * 5000,
    ],
)
def test_hostile_payoffs_fail_fast_with_a_reason(payoff_block):
    text = f"<thinking>t</thinking><payoff>{payoff_block}</payoff><analyze>a</analyze><response>r</response>"
    t0 = time.perf_counter()
    tolerant, strict = read_tolerant(text), check_strict(text)
    assert time.perf_counter() - t0 < 2.0
    assert tolerant.error is not None and tolerant.error.startswith("payoff")
    assert not strict.ok and strict.reason.startswith("payoff")


def test_hostile_tag_repetition_is_linear():
    # The published regex backtracks over every `</thinking><payoff>` pair here (quadratic and worse).
    text = "<thinking>" + "</thinking><payoff>" * 20_000 + "</payoff><analyze>" * 20_000
    t0 = time.perf_counter()
    assert format_regex_matches(text) is False
    assert read_tolerant(text).error == "missing <response>…</response> block"
    assert not check_strict(text).ok
    assert time.perf_counter() - t0 < 2.0


def test_big_blocks_are_read():
    body = "word " * 40_000  # 200 KB
    payoff = json.dumps(PAYOFF)
    text = f"<thinking>{body}</thinking><payoff>{payoff}</payoff><analyze>a</analyze><response>{body}</response>"
    r = read_tolerant(text)
    # 80,000 body words + the payoff JSON's 30 space-separated tokens (6 cells x 5), the tags glued to neighbours
    assert r.error is None and r.format_ok and r.completion_words == 80_030


def test_parse_payoff_tolerant_round_trips_literals():
    assert parse_payoff_tolerant(repr(PAYOFF)) == PAYOFF


def test_render_full_prompt_is_the_published_one():
    msgs = render_messages("What is 2+2?")
    assert msgs[0]["role"] == "system" and msgs[0]["content"].startswith("\nThe assistant is designed to be helpful")
    user = msgs[1]["content"]
    assert user.startswith("Now you need to answer the user's most recent question. Always produce output in EXACTLY")
    assert user.endswith("keep <analyze> focused.Question: What is 2+2?")
    assert "maximize social welfare (LLM + user)" in user
    nash = render_user_message("q", rule=WelfareRule(kind="nash"))
    assert "maximize social welfare (LLM x user)" in nash and "(LLM + user)" not in nash
    first = render_user_message("q2", initial_question="q1")
    assert first.startswith("The user's initial question isQuestion: q1Now you need")


def test_compact_prompt_is_short_and_round_trips_through_strict_check():
    compact = render_user_message("What is 2+2?", style="compact")
    assert len(compact) < 400 and compact.endswith("Question: What is 2+2?")
    matrix = PayoffMatrix.from_dict(PAYOFF)
    text = render_completion("short", matrix, "DQ_AQ is best", "4.")
    r = check_strict(text)
    assert r.ok and r.matrix == matrix
    assert render_payoff(matrix).startswith('{"DQ_AQ": {"LLM": 0.0, "user": 5.0}')


def test_named_cell_and_response_action():
    assert named_cell("Frontier: DQ_DA, VQ_CQ. Chosen: VQ_CQ.") == "VQ_CQ"
    assert named_cell("no cells here") is None
    assert response_action("The answer is 4.") == "DA"
    assert response_action("Which city do you mean?") == "CQ"
    assert (
        response_action("The capital is Paris, a city of two million people on the Seine. Want more details?") == "AQ"
    )


def test_render_analyze_writes_the_frontier_the_dominated_cells_and_the_optimum():
    from paper_tables import TABLE1

    assert render_analyze(TABLE1, WelfareRule(kind="sum")) == (
        "Pareto frontier: DQ_AQ (3.0, 3.0), VQ_AQ (0.0, 4.0). DQ_CQ, DQ_DA, VQ_CQ, VQ_DA are dominated. "
        "Highest welfare by the sum rule: DQ_AQ. Chosen: DQ_AQ."
    )
    negative = PayoffMatrix.from_dict({c: {"LLM": -1.0, "user": -1.0} for c in CELLS})
    with pytest.raises(ValueError):
        render_analyze(negative, WelfareRule(kind="cobb_douglas"))  # no optimum under a product rule


def test_the_solver_splice_is_the_completion_layout_between_payoff_and_response():
    matrix = PayoffMatrix.from_dict(PAYOFF)
    analyze = render_analyze(matrix, WelfareRule())
    text = render_completion("t", matrix, analyze, "Hello.")
    assert text == f"<thinking>t</thinking><payoff>{render_through_analyze(matrix, analyze)}Hello.</response>"
    assert render_through_analyze(matrix, analyze).endswith(f"</payoff><analyze>{analyze}</analyze><response>")
    assert check_strict(text).ok
