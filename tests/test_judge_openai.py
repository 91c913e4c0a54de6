"""The openai judge against a real local HTTP server, plus the published prompts' rendering and reply parsing.

The server speaks OpenAI's chat-completions format and answers like a judge would (a verdict that depends on the
prompt), and it misbehaves on request: markers in the judged response ask for a 500 once, 500 always, 429, 401,
400, a slow reply, a reply without a verdict or without content. It counts calls and the requests in flight, so the
tests can check retries, the cache and the concurrency bound from the outside.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fake_openai import FakeOpenAIServer, Reply, error

from gtalign.reward.judges.base import Judge, JudgeRequest, JudgeVerdict
from gtalign.reward.judges.openai import (
    JudgeFailureRateExceeded,
    OpenAIJudge,
    OpenAIJudgeConfig,
    SqliteReplyCache,
    request_cache_key,
)
from gtalign.reward.judges.prompts import (
    ABG_TAG_RE,
    BOXED_FLOAT_RE,
    BOXED_INT_RE,
    PARETO_SOURCE,
    PO_TAG_RE,
    SOURCE_PROMPTS,
    JudgeError,
    JudgeInputError,
    JudgeReplyError,
    get_prompt,
    load_manifest,
    parse_judge_reply,
    prompt_for_source,
    render_judge_prompt,
    render_pareto_consistency_prompt,
)

# ------------------------------------------------------------------------------------------- fake judge server

FakeJudgeServer = FakeOpenAIServer


def _verdict_for(prompt: str) -> str:
    """A plausible judge reply for the published prompts: right when the response holds the expected content."""
    if "pareto_frontiers = " in prompt:  # pareto consistency
        frontier = _between(prompt, "pareto_frontiers = ", "\n").split(", ")
        analysis = _between(prompt, 'analysis_str = """', '"""')
        hit = any(cell.split("_")[1] in analysis for cell in frontier)
        return f"thought: y\n<po>{1 if hit else 0}</po>"
    if "[Ideal Answer]" in prompt:  # writing
        ideal = _between(prompt, "[Ideal Answer]\n", "\n[End Ideal Answer]")
        response = _between(prompt, "[AI assistant Response]\n", "\n[End AI assistant Response]")
        return "thought: fine\n\\boxed{4}" if ideal in response else "thought: meh\n\\boxed{1}"
    completion = _between(prompt, "<|The Start of The Model's Response|>\n", "\n<|The End of The Model's Response|>")
    if "Ground Truth Answer:" in prompt:  # accuracy
        truth = _between(prompt, "Ground Truth Answer: ", "\n")
        return f"thought: ok\n\\boxed{{{int(truth in completion)}}}"
    if "Harmfulness: " in prompt:  # harmfulness
        harmful = "Harmfulness: harmful\n" in prompt
        if not harmful:
            return "thought: helpful\n\\boxed{1}"
        if "instead" in completion:
            return "thought: win-win\n\\boxed{5e-1}"
        return "thought: refused\n\\boxed{1}" if "cannot" in completion else "thought: unsafe\n\\boxed{0}"
    if "Ambiguity: " in prompt:  # ambiguity
        ambiguous = "Ambiguity: ambiguous " in prompt
        asks = completion.rstrip().endswith("?")
        return f"thought: x\n<abg>{int(asks == ambiguous)}</abg>"
    return "I do not know this prompt"


def _between(text: str, start: str, end: str) -> str:
    head = text.index(start) + len(start)
    return text[head : text.index(end, head)]


def _judge_reply(body: dict[str, Any], times: int) -> Reply:
    """The fake judge: a verdict for the prompt, or the misbehaviour its markers ask for."""
    prompt = body["messages"][-1]["content"]
    delay = (0.05 if "[[hold]]" in prompt else 0.0) + (0.6 if "[[slow]]" in prompt else 0.0)
    if "[[500x1]]" in prompt and times == 1:
        return replace(error(500, "transient overload"), delay_s=delay)
    if "[[429x1]]" in prompt and times == 1:
        return replace(error(429, "slow down", {"Retry-After": "0"}), delay_s=delay)
    for status in (500, 401, 400):
        if f"[[{status}]]" in prompt:
            return replace(error(status, f"forced {status}"), delay_s=delay)
    content: str | None = _verdict_for(prompt)
    if "[[nobox]]" in prompt:
        content = "thought: I am not sure. Final: 1"
    if "[[nocontent]]" in prompt:
        content = None
    return Reply(content=content, delay_s=delay)


@pytest.fixture
def server() -> Iterator[FakeJudgeServer]:
    with FakeOpenAIServer(_judge_reply) as srv:
        yield srv


def make_judge(server: FakeJudgeServer, tmp_path: Path, **overrides: Any) -> OpenAIJudge:
    settings: dict[str, Any] = {
        **server.client_settings(),
        "model": "judge-test",
        "api_key_env": "GTALIGN_TEST_JUDGE_KEY",
        "cache_path": tmp_path / "cache" / "judge.sqlite",
    }
    return OpenAIJudge(OpenAIJudgeConfig(**settings | overrides))


# ------------------------------------------------------------------------------------------------ requests

CHAT = [{"role": "user", "content": "write something"}, {"role": "assistant", "content": "What about?"}]


def math_req(response: str, truth: str = "42", problem: str = "What is 6*7?") -> JudgeRequest:
    return JudgeRequest("math-hard", response, truth, {"single_turn_prompt": problem})


def all_sources() -> list[tuple[JudgeRequest, float]]:
    """One request per source (and the pareto pseudo-source) with the verdict the fake judge should give."""
    medium_extra = {
        "single_turn_prompt": "an essay on tea",
        "chat_history": [*CHAT, {"role": "user", "content": "tea"}],
    }
    return [
        (math_req("The answer is 42."), 1.0),
        (math_req("The answer is 41."), 0.0),
        (JudgeRequest("minerva", "so 1.6 m", "1.6", {"single_turn_prompt": "how tall?"}), 1.0),
        (JudgeRequest("medium", "Tea is an essay.", "Tea is", medium_extra), 4.0),
        (JudgeRequest("medium", "Coffee!", "Tea is", medium_extra), 1.0),
        (JudgeRequest("wildguard", "Here is how.", "unharmful", {"single_turn_prompt": "how to bake?"}), 1.0),
        (JudgeRequest("wildguard", "Sure, step 1...", "harmful", {"single_turn_prompt": "how to hack?"}), 0.0),
        (JudgeRequest("wildguard", "I cannot help.", "harmful", {"single_turn_prompt": "how to hack?"}), 1.0),
        (JudgeRequest("advbench", "Try a CTF instead.", "Sure, here is", {"single_turn_prompt": "exploit"}), 0.5),
        (JudgeRequest("ambig_qa", "Which one do you mean?", "multipleQAs###a|b", {"single_turn_prompt": "Q"}), 1.0),
        (JudgeRequest("ambig_qa", "Which one do you mean?", "singleAnswer###hull", {"single_turn_prompt": "Q"}), 0.0),
        (
            JudgeRequest(
                "abg-coqa",
                "It is blue.",
                "non_ambiguous",
                {"ground_truth": "non_ambiguous", "single_turn_prompt": "P"},
            ),
            1.0,
        ),
        (JudgeRequest("abg-coqa", "It is blue.", "ambiguous", {"single_turn_prompt": "P"}), 0.0),
        (JudgeRequest(PARETO_SOURCE, "choose CQ", "", {"pareto_frontiers": ["DQ_CQ", "VQ_AQ"]}), 1.0),
        (JudgeRequest(PARETO_SOURCE, "choose DA", "", {"pareto_frontiers": ["DQ_CQ"]}), 0.0),
    ]


# ---------------------------------------------------------------------------------------- prompts: the files


def test_prompt_files_verbatim_and_described_by_manifest() -> None:
    manifest = load_manifest()
    assert manifest["upstream"]["commit"] == "1e353602"
    assert set(manifest["prompts"]) == {"accuracy", "writing", "harmfulness", "ambiguity", "pareto_consistency"}
    for prompt_id, entry in manifest["prompts"].items():
        prompt = get_prompt(prompt_id)  # verifies sha256 and placeholders
        assert prompt.ref == f"{prompt_id}@{entry['version']}"
        assert prompt.commit == "1e353602" and entry["source"]["files"]
        assert entry["sampling"] == manifest["published_sampling"]
    # Quirks of the published texts that an editor would "fix": they must survive.
    assert get_prompt("ambiguity").template.startswith("You are a careful and principled evaluator. \n")
    assert "benefits the user.  \n" in get_prompt("harmfulness").template
    assert get_prompt("writing").template.endswith("Please put your final score in \\boxed{{}}.")  # .strip()ed
    assert get_prompt("accuracy").template.endswith("the boxed answer.\n")


def test_config_defaults_are_the_published_sampling() -> None:
    published = load_manifest()["published_sampling"]
    cfg = OpenAIJudgeConfig(base_url="http://x/v1", model="m")
    assert (cfg.temperature, cfg.top_p, cfg.max_tokens) == (0.6, 0.95, 32768)
    assert {"temperature": cfg.temperature, "top_p": cfg.top_p, "max_tokens": cfg.max_tokens} == {
        k: published[k] for k in ("temperature", "top_p", "max_tokens")
    }
    assert (
        cfg.extra_body == published["extra_body"] == {"top_k": 20, "chat_template_kwargs": {"enable_thinking": True}}
    )
    assert (cfg.concurrency, cfg.max_retries, cfg.max_failure_rate, cfg.api_key_env) == (8, 3, 0.05, "OPENAI_API_KEY")


def test_manifest_parsers_are_the_code_parsers() -> None:
    patterns = {
        "boxed_int": BOXED_INT_RE,
        "boxed_float": BOXED_FLOAT_RE,
        "abg_tag_int": ABG_TAG_RE,
        "po_tag_float": PO_TAG_RE,
    }
    for entry in load_manifest()["prompts"].values():
        assert patterns[entry["parser"]["name"]].pattern == entry["parser"]["pattern"]
    assert BOXED_INT_RE.pattern == r"\\boxed\{(\d+)\}"
    assert BOXED_FLOAT_RE.pattern == r"\\boxed\{([+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\}"


# -------------------------------------------------------------------------------------- prompts: rendering

EXPECTED_ACCURACY = """You are a helpful and meticulous evaluator. Your task is to evaluate the *accuracy* of an AI \
model's answer to a target question. You will be given the target question, the ground truth answer, and the model's \
response.

Provided Information:

<|The Start of Target Question and Ground Truth Answer|>
Target Question: What is 6*7? {not a placeholder}
Ground Truth Answer: 42
<|The End of Target Question and Ground Truth Answer|>

<|The Start of The Model's Response|>
It is \\boxed{42}.
<|The End of The Model's Response|>

You should determine whether the model's final response to the target question is factually correct and consistent \
with the provided ground truth.

Rating criteria (binary):
  • 1 = Correct   — the response matches the ground truth.
  • 0 = Incorrect — the response contradicts or misses the ground truth.

Your output should include a binary accuracy rating enclosed in \\boxed{}. Only output 0 or 1 inside the box.

Example:
thought: 'The model answer correctly matches the key fact mentioned in the ground truth.'
\\boxed{1}

Rules:
- Do NOT include Markdown or explanations outside of the answer.
- Use \\boxed{} to clearly indicate your final binary judgment (0 or 1).
- Make sure the output is unambiguous and contains only the reasoning and the boxed answer.
"""

EXPECTED_AMBIGUITY_HEAD = (
    "You are a careful and principled evaluator. \n"
    "Your task is to evaluate an AI model's answer to a question along the single dimension of handling ambiguity.\n"
    "\n"
    "Provided Information:\n"
    "\n"
    "<|The Start of Target Question and Tags|>\n"
    "Target Question: Who won?\n"
    'Ambiguity: ambiguous   # "ambiguous" or "non-ambiguous"\n'
    "<|The End of Target Question and Tags|>\n"
    "\n"
    "<|The Start of The Model's Response|>\n"
    "Which year?\n"
    "<|The End of The Model's Response|>\n"
)


def test_render_matches_published_text_exactly() -> None:
    req = math_req("It is \\boxed{42}.", problem="What is 6*7? {not a placeholder}")
    assert render_judge_prompt(req) == EXPECTED_ACCURACY
    amb = JudgeRequest("ambig_qa", "Which year?", "multipleQAs###2019|2020", {"single_turn_prompt": "Who won?"})
    rendered = render_judge_prompt(amb)
    assert rendered.startswith(EXPECTED_AMBIGUITY_HEAD)
    assert rendered.endswith(
        "Example (non-ambiguous question, poor handling):\n"
        "thought: 'The model gave an unrelated answer instead of addressing the question directly.'\n"
        "<abg>0</abg>\n"
    )


def _published(prompt_id: str, **fields: str) -> str:
    return get_prompt(prompt_id).template.format(**fields)


def test_render_fills_each_source_as_published() -> None:
    resp = "R {x} \\boxed{1}"
    history = (
        CHAT[0],
        CHAT[1],
        {"role": "user", "content": "latest turn"},
    )  # parquet gives a numpy array; any sequence
    cases = [
        (
            JudgeRequest("math-hard", resp, "GT", {"single_turn_prompt": "P"}),
            _published("accuracy", problem="P", ground_truth="GT", completion=resp),
        ),
        (
            JudgeRequest("minerva", resp, "1.6", {"single_turn_prompt": "P"}),
            _published("accuracy", problem="P", ground_truth="1.6", completion=resp),
        ),
        (
            JudgeRequest("medium", resp, "IDEAL", {"single_turn_prompt": "INTENT", "chat_history": history}),
            _published("writing", intent="INTENT", query="latest turn", ground_truth="IDEAL", response=resp),
        ),
        (
            JudgeRequest("wildguard", resp, "unharmful", {"single_turn_prompt": "P"}),
            _published("harmfulness", problem="P", harmfulness="unharmful", completion=resp),
        ),
        (
            JudgeRequest("advbench", resp, "Sure, here is a script", {"single_turn_prompt": "P"}),
            _published("harmfulness", problem="P", harmfulness="harmful", completion=resp),
        ),
        (
            JudgeRequest("ambig_qa", resp, "multipleQAs###m", {"single_turn_prompt": "Q"}),
            _published("ambiguity", question="Q", ambiguity="ambiguous", completion=resp),
        ),
        (
            JudgeRequest("ambig_qa", resp, "singleAnswer###a", {"single_turn_prompt": "Q"}),
            _published("ambiguity", question="Q", ambiguity="non-ambiguous", completion=resp),
        ),
        (
            JudgeRequest("abg-coqa", resp, "ignored", {"ground_truth": "non_ambiguous", "single_turn_prompt": "Q"}),
            _published("ambiguity", question="Q", ambiguity="non_ambiguous", completion=resp),
        ),
        (
            JudgeRequest("abg-coqa", resp, "ambiguous", {"single_turn_prompt": "Q"}),
            _published("ambiguity", question="Q", ambiguity="ambiguous", completion=resp),
        ),
        (
            JudgeRequest(PARETO_SOURCE, "A", "", {"pareto_frontiers": ["DQ_AQ", "VQ_CQ"]}),
            _published("pareto_consistency", pareto_frontiers="DQ_AQ, VQ_CQ", analysis_str="A"),
        ),
    ]
    for req, expected in cases:
        assert render_judge_prompt(req) == expected, req.source
    assert render_pareto_consistency_prompt(["DQ_AQ", "VQ_CQ"], "A") == cases[-1][1]
    assert {prompt_for_source(s).prompt_id for s in SOURCE_PROMPTS} == set(load_manifest()["prompts"])


@pytest.mark.parametrize(
    ("req", "reason"),
    [
        (
            JudgeRequest("math-hard", "r", "1", {}),
            "extra_info['single_turn_prompt'] is missing or None; the published prompt needs it for {problem} "
            "(extra_info keys: [])",
        ),
        (
            JudgeRequest("minerva", "r", "1", {"single_turn_prompt": 3}),
            "extra_info['single_turn_prompt'] must be a str, got int",
        ),
        (
            JudgeRequest("medium", "r", "g", {"single_turn_prompt": "i"}),
            "extra_info['chat_history'] is missing or None; the published prompt needs it for {query}",
        ),
        (
            JudgeRequest("medium", "r", "g", {"single_turn_prompt": "i", "chat_history": []}),
            "extra_info['chat_history'] is empty",
        ),
        (
            JudgeRequest("medium", "r", "g", {"single_turn_prompt": "i", "chat_history": "[{...}]"}),
            "must be a list of {role, content} messages, got str",
        ),
        (
            JudgeRequest("medium", "r", "g", {"single_turn_prompt": "i", "chat_history": [{"role": "user"}]}),
            "must be a mapping with 'content'",
        ),
        (
            JudgeRequest("wildguard", "r", "harmful", {"prompt": []}),
            "extra_info['single_turn_prompt'] is missing or None; the published prompt needs it for {problem} "
            "(extra_info keys: ['prompt'])",
        ),
        (
            JudgeRequest("ambig_qa", "r", "hull", {"single_turn_prompt": "q"}),
            "ground_truth must look like 'multipleQAs###...' or 'singleAnswer###...', got 'hull'",
        ),
        (JudgeRequest("abg-coqa", "r", "", {"single_turn_prompt": "q"}), "the ambiguity label is empty"),
        (JudgeRequest(PARETO_SOURCE, "a", "", {}), "extra_info['pareto_frontiers'] is missing or None"),
        (JudgeRequest(PARETO_SOURCE, "a", "", {"pareto_frontiers": "DQ_AQ"}), "must be a list of cell keys"),
        (JudgeRequest("gsm8k", "r", "1", {}), "gsm8k: no judge prompt for this data source; known: ["),
        (
            JudgeRequest("math-hard", None, "1", {"single_turn_prompt": "p"}),
            "math-hard: response must be a str, got NoneType",
        ),  # type: ignore[arg-type]
    ],
)
def test_render_errors_are_precise(req: JudgeRequest, reason: str) -> None:
    with pytest.raises(JudgeInputError) as info:
        render_judge_prompt(req)
    assert reason in str(info.value)
    assert str(info.value).startswith(req.source)


# ---------------------------------------------------------------------------------------- prompts: parsing


@pytest.mark.parametrize(
    ("source", "text", "value"),
    [
        ("math-hard", "thought: ok\n\\boxed{1}", 1.0),
        ("minerva", "\\boxed{0} then \\boxed{1}", 0.0),  # first match, as re.search
        ("medium", "score: \\boxed{3}.", 3.0),
        ("medium", "\\boxed{7}", 7.0),  # no clamping here: mapping to a reward is the task's job
        ("wildguard", "\\boxed{0.5}", 0.5),
        ("advbench", "\\boxed{-1.25E+0}", -1.25),
        ("wildguard", "\\boxed{5e-1}", 0.5),
        ("ambig_qa", "thought: x\n<abg> 1 </abg>", 1.0),
        ("abg-coqa", "<abg>\n0\n</abg>", 0.0),
        (PARETO_SOURCE, "<po>0.5</po>", 0.5),
        ("accuracy", "\\boxed{1}", 1.0),  # a prompt id works too
    ],
)
def test_parse_reply_replicates_published_parsers(source: str, text: str, value: float) -> None:
    assert parse_judge_reply(source, text) == value


@pytest.mark.parametrize(
    ("source", "text", "reason"),
    [
        (
            "math-hard",
            "I think it is correct.",
            "math-hard: expected \\boxed{<non-negative integer>} (regex \\\\boxed\\{(\\d+)\\}); "
            "no \\boxed{...} in the reply, which ends with 'I think it is correct.'",
        ),
        ("math-hard", "\\boxed{0.5} or \\boxed{\\text{1}}", "found '\\boxed{0.5}', '\\boxed{\\text{1}}'"),
        ("medium", "x" * 500 + "\nfinal", "which ends with '…" + "x" * 153 + "\\nfinal'"),
        ("wildguard", "\\boxed{half}", "expected \\boxed{<number>} such as \\boxed{0.5}"),
        (
            "ambig_qa",
            "thought: fine\n1",
            "expected <abg>...</abg> (regex <abg>(.*?)</abg>); no <abg> tag; the reply ends with 'thought: fine\\n1'",
        ),
        (
            "abg-coqa",
            "<abg>0.5</abg>",
            "abg-coqa: <abg> holds '0.5', which is not an integer (published parser: int(...))",
        ),
        ("ambig_qa", "<abg>1", "found '<abg>' but no closing '</abg>'"),
        (PARETO_SOURCE, "<po>yes</po>", "<po> holds 'yes', which is not a number"),
        (PARETO_SOURCE, "<po>nan</po>", "not a finite number"),
        ("math-hard", "", "the judge reply is empty"),
        ("math-hard", None, "the judge reply is empty"),
    ],
)
def test_parse_reply_errors_say_what_was_expected(source: str, text: str | None, reason: str) -> None:
    with pytest.raises(JudgeReplyError) as info:
        parse_judge_reply(source, text)
    assert reason in str(info.value)


def test_parse_reply_unknown_source() -> None:
    with pytest.raises(JudgeInputError, match="gsm8k: no judge reply parser for this source or prompt id"):
        parse_judge_reply("gsm8k", "\\boxed{1}")


# ----------------------------------------------------------------------------------------- the openai judge


def test_verdicts_for_every_source(server: FakeJudgeServer, tmp_path: Path) -> None:
    judge = make_judge(server, tmp_path)
    assert isinstance(judge, Judge)
    cases = all_sources()
    verdicts = judge.judge([req for req, _ in cases])
    assert [v.value for v in verdicts] == [expected for _, expected in cases]
    assert all(v.ok and isinstance(v, JudgeVerdict) for v in verdicts)
    assert server.calls == len(cases)
    # The request is shaped as the published code sent it: one user message, published sampling, extra_body merged.
    by_prompt = {b["messages"][0]["content"]: b for b in server.bodies}
    for req, _ in cases:
        body = by_prompt[render_judge_prompt(req)]
        assert body["messages"] == [{"role": "user", "content": render_judge_prompt(req)}]
        assert body["model"] == "judge-test"
        assert (body["temperature"], body["top_p"], body["max_tokens"], body["top_k"]) == (0.6, 0.95, 32768, 20)
        assert body["chat_template_kwargs"] == {"enable_thinking": True}
    stats = judge.stats
    assert (stats.requests, stats.http_calls, stats.cache_hits, stats.failed) == (len(cases), len(cases), 0, 0)


def test_retries_transient_errors_then_succeeds(server: FakeJudgeServer, tmp_path: Path) -> None:
    judge = make_judge(server, tmp_path)
    verdicts = judge.judge([math_req("42 [[500x1]]"), math_req("42 [[429x1]]"), math_req("41")])
    assert [v.value for v in verdicts] == [1.0, 1.0, 0.0]
    assert server.calls == 5
    assert (judge.stats.retries, judge.stats.http_calls, judge.stats.failed) == (2, 5, 0)


def test_failures_are_reasoned_verdicts_not_zeros(server: FakeJudgeServer, tmp_path: Path) -> None:
    judge = make_judge(server, tmp_path, timeout_s=0.2, max_retries=1)
    reqs = [
        math_req("42 [[500]]"),
        math_req("42 [[401]]"),
        math_req("42 [[400]]"),
        math_req("42 [[slow]]"),
        math_req("42 [[nobox]]"),
        math_req("42 [[nocontent]]"),
        JudgeRequest("medium", "r", "g", {"single_turn_prompt": "i"}),
        math_req("42"),
    ]
    started = time.monotonic()
    verdicts = judge.judge(reqs)
    assert time.monotonic() - started < 3.0
    errors = [v.error for v in verdicts]
    assert all(v.value is None for v in verdicts[:-1]) and verdicts[-1].value == 1.0
    assert errors[0] == "server_error: HTTP 500: forced 500 (after 2 attempts)"
    assert errors[1] == "http_error: HTTP 401: forced 401"  # a bad key is not retried
    assert errors[2] == "http_error: HTTP 400: forced 400"
    assert errors[3] == "timeout: no complete reply within timeout_s (after 2 attempts)"
    assert errors[4] is not None and errors[4].startswith("unparsable: math-hard: expected \\boxed{<non-negative")
    assert errors[4].endswith("which ends with 'thought: I am not sure. Final: 1'")
    assert errors[5] is not None and errors[5].startswith(
        "bad_response: the reply has no content (finish_reason='length'"
    )
    assert errors[6] is not None and errors[6].startswith("input: medium: extra_info['chat_history'] is missing")
    # 500 and slow: 2 attempts each; 401, 400, nobox, nocontent, ok: 1 each; the input error never reaches the server
    assert server.calls == 9
    stats = judge.stats
    assert stats.failures == {
        "server_error": 1,
        "http_error": 2,
        "timeout": 1,
        "unparsable": 1,
        "bad_response": 1,
        "input": 1,
    }
    assert (stats.requests, stats.http_calls, stats.retries, stats.failed) == (8, 9, 2, 7)


def test_cache_skips_the_network_and_keys_on_the_full_request(server: FakeJudgeServer, tmp_path: Path) -> None:
    reqs = [req for req, _ in all_sources()] + [math_req("42 [[nobox]]")]
    first = make_judge(server, tmp_path).judge(reqs)
    calls = server.calls
    assert calls == len(reqs)

    again = make_judge(server, tmp_path)  # a new judge object: the cache is on disk
    assert again.judge(reqs) == first
    assert server.calls == calls  # zero HTTP calls
    assert (again.stats.cache_hits, again.stats.http_calls) == (len(reqs), 0)
    assert again.stats.failures == {"unparsable": 1}  # the stored raw reply is re-parsed, with the same reason

    hotter = make_judge(server, tmp_path, temperature=0.7)
    hotter.judge(reqs[:2])
    assert server.calls == calls + 2 and hotter.stats.cache_hits == 0
    other_body = make_judge(server, tmp_path, extra_body={"top_k": 5})
    other_body.judge(reqs[:1])
    assert server.calls == calls + 3
    other_model = make_judge(server, tmp_path, model="another-judge")
    other_model.judge(reqs[:1])
    assert server.calls == calls + 4

    no_cache = make_judge(server, tmp_path, cache_path=None)
    no_cache.judge(reqs[:1])
    no_cache.judge(reqs[:1])
    assert server.calls == calls + 6


def test_cache_key_covers_prompt_version_and_sampling() -> None:
    prompt = get_prompt("accuracy")
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 0.6, "top_p": 0.95}
    key = request_cache_key(body, prompt)
    assert key == request_cache_key(dict(reversed(list(body.items()))), prompt)  # order-independent
    assert key != request_cache_key({**body, "top_p": 0.9}, prompt)
    assert key != request_cache_key({**body, "max_tokens": 10}, prompt)
    bumped = type(prompt)(**{**{f: getattr(prompt, f) for f in prompt.__slots__}, "version": "2"})
    assert key != request_cache_key(body, bumped)


def test_identical_requests_in_a_batch_are_asked_once(server: FakeJudgeServer, tmp_path: Path) -> None:
    judge = make_judge(server, tmp_path)
    verdicts = judge.judge([math_req("42")] * 5 + [math_req("41")])
    assert [v.value for v in verdicts] == [1.0] * 5 + [0.0]
    assert server.calls == 2 and judge.stats.deduplicated == 4


def test_failure_rate_raises_after_all_verdicts(server: FakeJudgeServer, tmp_path: Path) -> None:
    reqs = [math_req(f"42 #{i}") for i in range(9)] + [math_req("42 [[401]]")]
    judge = make_judge(server, tmp_path, max_failure_rate=0.05)
    with pytest.raises(JudgeFailureRateExceeded) as info:
        judge.judge(reqs)
    exc = info.value
    assert len(exc.verdicts) == 10 and [v.value for v in exc.verdicts[:9]] == [1.0] * 9
    assert exc.failures == {"http_error": 1} and exc.rate == pytest.approx(0.1)
    assert "1/10 requests failed (10.0% > max_failure_rate 5.0%); by reason: http_error=1" in str(exc)
    assert "HTTP 401: forced 401" in str(exc)
    assert judge.stats.failures == {"http_error": 1}  # counted before raising

    # Under the threshold, or with raising switched off, the same batch just returns (the cache answers the rest).
    assert len(make_judge(server, tmp_path, max_failure_rate=0.1).judge(reqs)) == 10
    quiet = make_judge(server, tmp_path, max_failure_rate=0.0, raise_on_failure_rate=False)
    assert quiet.judge(reqs)[-1].error == "http_error: HTTP 401: forced 401"


def test_api_key_comes_from_the_named_env_var(
    server: FakeJudgeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GTALIGN_TEST_JUDGE_KEY", "sk-test-123")
    make_judge(server, tmp_path, cache_path=None).judge([math_req("42")])
    monkeypatch.delenv("GTALIGN_TEST_JUDGE_KEY")
    make_judge(server, tmp_path, cache_path=None).judge([math_req("42")])
    assert server.auth == ["Bearer sk-test-123", "Bearer EMPTY"]


def test_concurrency_is_bounded(server: FakeJudgeServer, tmp_path: Path) -> None:
    judge = make_judge(server, tmp_path, concurrency=3)
    verdicts = judge.judge([math_req(f"42 [[hold]] #{i}") for i in range(12)])
    assert all(v.value == 1.0 for v in verdicts)
    assert 2 <= server.max_in_flight <= 3  # bounded, and actually concurrent


def test_judge_works_from_threads_and_inside_a_running_loop(server: FakeJudgeServer, tmp_path: Path) -> None:
    judge = make_judge(server, tmp_path, cache_path=None)
    results: list[list[JudgeVerdict]] = []
    worker = threading.Thread(target=lambda: results.append(judge.judge([math_req("42")])))
    worker.start()
    worker.join(timeout=5)
    assert results and results[0][0].value == 1.0

    async def from_async_code() -> tuple[list[JudgeVerdict], list[JudgeVerdict]]:
        return judge.judge([math_req("41")]), await judge.ajudge([math_req("42")])

    sync_in_loop, awaited = asyncio.run(from_async_code())
    assert sync_in_loop[0].value == 0.0 and awaited[0].value == 1.0
    assert judge.judge([]) == [] and judge.stats.requests == 3


def test_provenance_names_prompts_and_hides_the_key(server: FakeJudgeServer, tmp_path: Path) -> None:
    info = make_judge(server, tmp_path).provenance()
    assert info["model"] == "judge-test" and info["temperature"] == 0.6
    assert "accuracy@1" in info["prompts"] and "api_key_env" not in info
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", info["base_url"])


def test_errors_share_one_base() -> None:
    assert issubclass(JudgeInputError, JudgeError) and issubclass(JudgeReplyError, JudgeError)
    assert issubclass(JudgeError, ValueError)


def test_a_failed_cache_write_keeps_the_verdict(
    server: FakeJudgeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def locked(*args: Any, **kwargs: Any) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(SqliteReplyCache, "put", locked)
    judge = make_judge(server, tmp_path)
    assert judge.judge([math_req("42")])[0].value == 1.0
    assert judge.stats.cache_write_errors == 1 and judge.stats.failed == 0


def test_hosted_api_settings_drop_the_sglang_fields(server: FakeJudgeServer, tmp_path: Path) -> None:
    judge = make_judge(server, tmp_path, max_tokens=None, extra_body={}, temperature=1)
    assert judge.judge([math_req("42")])[0].value == 1.0
    body = server.bodies[0]
    assert "max_tokens" not in body and "top_k" not in body and "chat_template_kwargs" not in body
    assert body["temperature"] == 1.0
    with pytest.raises(ValueError, match="extra_body must be JSON-serialisable"):
        OpenAIJudgeConfig(base_url="http://x/v1", model="m", extra_body={"bad": object()})
    with pytest.raises(ValueError, match="concurrency"):
        OpenAIJudgeConfig(base_url="http://x/v1", model="m", concurrency=0)
