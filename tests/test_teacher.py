"""The openai SFT teacher against a real local HTTP server that serves hand-made candidate answers.

Each test prompt names a script: per `seed`, the server answers with a candidate (strictly valid with different
payoffs or answers, or broken in a different way) or misbehaves (500 once, 429 once, 400 always). The welfare is the
real reward with the offline `rule` judge, so the expected choice is checked exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fake_openai import FakeOpenAIServer, Reply, error

import gtalign.teacher as teacher_mod
from gtalign.config import ParamsError, parse_params
from gtalign.data.stages import demonstrations_stage
from gtalign.game import CELLS, PayoffMatrix
from gtalign.protocol import check_strict, render_completion
from gtalign.reward import RewardConfig, RewardInput, score_batch
from gtalign.reward.judges import make_judge
from gtalign.teacher import (
    DROP_NO_REPLY,
    DROP_NO_STRICT,
    OpenAITeacherConfig,
    TeacherFailureRateExceeded,
    TeacherPrompt,
    best_of_n,
)

N = 6


def matrix(asymmetric_cells: int) -> PayoffMatrix:
    """A matrix whose first `asymmetric_cells` cells have user != LLM (the payoff term rewards asymmetry)."""
    values = {}
    for i, cell in enumerate(CELLS):
        llm = 1.0 + 0.5 * i
        values[cell] = {"LLM": llm, "user": llm + 1.0 if i < asymmetric_cells else llm}
    return PayoffMatrix.from_dict(values)


def answer(asymmetric_cells: int, value: int) -> str:
    return render_completion(
        "The question is clear, so it is DQ; a direct answer is cheapest.",
        matrix(asymmetric_cells),
        "Pareto frontier: DQ_DA. Chosen: DQ_DA.",
        f"The answer is $\\boxed{{{value}}}$.",
    )


GOOD = answer(3, 42)
# seed -> candidate. Seed 3 would score highest under the reward's tolerant reader, but its payoff is not strict JSON;
# seeds 4 and 5 tie, so the lower seed must win.
PICK = [
    answer(0, 42),  # valid, correct, no payoff asymmetry
    answer(3, 41),  # valid, wrong
    GOOD.replace("</response>", ""),  # broken: a missing tag
    answer(6, 42).replace('"', "'"),  # broken: Python-literal payoff (tolerant reader accepts it, strict does not)
    GOOD,  # valid, correct: the best strictly valid one
    GOOD,  # the same welfare: loses the tie to seed 4
]
ALL_BAD = [
    "The answer is 42.",
    "Sure! " + GOOD,
    GOOD.replace('"DQ_AQ"', '"DQ_XX"'),
    GOOD.replace("<analyze>", "").replace("</analyze>", ""),
    GOOD + "<response>again</response>",
    GOOD.replace("The answer is $\\boxed{42}$.", "   "),
]


def respond(body: dict[str, Any], times: int) -> Reply:
    """The teacher's answers, chosen by the question (last user turn, after any 'Question: ') and the seed."""
    question = body["messages"][-1]["content"].rsplit("Question: ", 1)[-1]
    seed = body["seed"] % N  # a larger n repeats the script
    if question.startswith("pick") or question == "What is 6*7?":
        return Reply(PICK[seed])
    if question.startswith("all-bad"):
        return Reply(ALL_BAD[seed])
    if question.startswith("flaky"):
        if seed == 0 and times == 1:
            return error(500, "transient overload")
        if seed == 1 and times == 1:
            return error(429, "slow down", {"Retry-After": "0"})
        return Reply(PICK[seed])
    if question.startswith("dead"):
        return error(400, "model does not exist")
    return error(404, f"no script for {question!r}")


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(respond) as srv:
        yield srv


def config(server: FakeOpenAIServer, tmp_path: Path, **overrides: Any) -> OpenAITeacherConfig:
    settings: dict[str, Any] = {
        **server.client_settings(),
        "model": "teacher-test",
        "api_key_env": "GTALIGN_TEST_TEACHER_KEY",
        "n": N,
        "cache_path": tmp_path / "teacher.sqlite",
    }
    return OpenAITeacherConfig(**settings | overrides)


def prompt(name: str) -> TeacherPrompt:
    return TeacherPrompt(name, "math-hard", "42", [{"role": "user", "content": f"Question: {name}"}])


def run(server: FakeOpenAIServer, tmp_path: Path, names: list[str], **overrides: Any) -> teacher_mod.TeacherResult:
    judge_config = overrides.pop("judge_config", None)
    return best_of_n(
        [prompt(n) for n in names],
        config(server, tmp_path, **overrides),
        make_judge("rule"),
        RewardConfig(),
        judge_config=judge_config,
        progress=False,
    )


def welfare(text: str) -> float | None:
    return score_batch([RewardInput(text, "math-hard", "42", {})], make_judge("rule"), RewardConfig())[0].score


def test_keeps_the_best_strictly_valid_candidate_and_drops_prompts_without_one(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    result = run(server, tmp_path, ["pick", "all-bad"])
    pick, bad = result.selections
    # The hand-made case: seed 3 has the highest welfare of all but is not strict; 4 and 5 tie; 4 wins.
    assert welfare(PICK[3]) > welfare(GOOD) > welfare(PICK[0]) > welfare(PICK[1])
    assert (pick.seed, pick.text, pick.reason) == (4, GOOD, None)
    assert pick.welfare == pytest.approx(welfare(GOOD))
    assert [c.kind for c in pick.candidates] == [None, None, "strict_format", "strict_format", None, None]
    assert pick.candidates[2].reason == "missing </response> (found 7 of 8 tags)"
    assert check_strict(pick.text).ok

    assert (bad.text, bad.seed, bad.reason) == (None, None, DROP_NO_STRICT)
    assert all(c.kind == "strict_format" and c.reason for c in bad.candidates)
    assert result.texts == [GOOD, None]

    stats = result.stats
    assert (stats.prompts, stats.candidates, stats.requests, stats.calls, stats.cache_hits) == (2, 12, 12, 12, 0)
    assert (stats.kept, stats.dropped, stats.failures) == (1, {DROP_NO_STRICT: 1}, {"strict_format": 8})
    assert stats.welfare_kept_mean == pytest.approx(welfare(GOOD))
    every = [welfare(t) for t in PICK + ALL_BAD]
    assert stats.welfare_all_mean == pytest.approx(sum(w for w in every if w is not None) / 12)
    assert stats.welfare_all_mean < stats.welfare_kept_mean
    metrics = stats.to_metrics()
    assert metrics["teacher_kept"] == 1 and metrics["teacher_dropped_no_strict_candidate"] == 1
    assert metrics["teacher_failures_strict_format"] == 8

    # N separate requests told apart by `seed` (no `n` field), sampled as configured.
    for name in ("pick", "all-bad"):
        bodies = [b for b in server.bodies if b["messages"][-1]["content"] == f"Question: {name}"]
        assert sorted(b["seed"] for b in bodies) == list(range(N))
        assert all("n" not in b and b["temperature"] == 1.0 and b["model"] == "teacher-test" for b in bodies)
        assert all(b["max_tokens"] == 8192 and b["top_p"] == 1.0 for b in bodies)


def test_a_rerun_costs_no_calls_and_a_new_candidate_costs_one(server: FakeOpenAIServer, tmp_path: Path) -> None:
    first = run(server, tmp_path, ["pick", "all-bad"])
    calls = server.calls

    again = run(server, tmp_path, ["pick", "all-bad"])  # the journal answers: no request, no rescoring
    assert server.calls == calls
    assert again.texts == first.texts and [s.reason for s in again.selections] == [None, DROP_NO_STRICT]
    assert (again.stats.resumed, again.stats.requests, again.stats.calls) == (2, 0, 0)
    assert again.stats.welfare_kept_mean == first.stats.welfare_kept_mean
    assert again.stats.failures == first.stats.failures

    rejudged = run(server, tmp_path, ["pick", "all-bad"], judge_config={"kind": "rule", "v": 2})  # re-selects...
    assert server.calls == calls  # ...from cached replies
    assert (rejudged.stats.resumed, rejudged.stats.cache_hits, rejudged.stats.calls) == (0, 12, 0)
    assert rejudged.texts == first.texts

    more = run(server, tmp_path, ["pick"], n=N + 1, max_failure_rate=1.0)  # seed 6 is new: one call
    assert server.calls == calls + 1 and more.stats.cache_hits == N


def test_transient_server_errors_are_retried(server: FakeOpenAIServer, tmp_path: Path) -> None:
    result = run(server, tmp_path, ["flaky"])
    assert result.selections[0].seed == 4 and result.texts == [GOOD]
    assert (result.stats.calls, result.stats.retries, result.stats.failures) == (N + 2, 2, {"strict_format": 2})


def test_failed_requests_drop_the_prompt_and_are_asked_again_next_run(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    result = run(server, tmp_path, ["dead", "pick"])
    dead = result.selections[0]
    assert (dead.text, dead.reason) == (None, DROP_NO_REPLY)
    assert dead.candidates[0].reason == "http_error: HTTP 400: model does not exist"  # a 4xx is not retried
    assert result.stats.failures == {"request:http_error": N, "strict_format": 2}
    assert result.stats.dropped == {DROP_NO_REPLY: 1} and result.texts[1] == GOOD

    calls = server.calls
    again = run(server, tmp_path, ["dead", "pick"])  # failures are neither cached nor journaled
    assert server.calls == calls + N and again.stats.resumed == 1


def test_a_teacher_that_is_down_stops_the_run(server: FakeOpenAIServer, tmp_path: Path) -> None:
    with pytest.raises(TeacherFailureRateExceeded) as info:
        run(server, tmp_path, ["dead", "pick"], chunk_prompts=1, max_failure_rate=0.5)
    exc = info.value
    assert (exc.failed, exc.asked) == (N, N) and server.calls == N  # the second chunk was never asked
    assert [s.reason for s in exc.result.selections] == [DROP_NO_REPLY]
    assert "6/6 candidate requests failed" in str(exc) and "HTTP 400: model does not exist" in str(exc)


def test_an_interrupted_run_resumes_without_losing_work(
    server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = ["pick", "all-bad", "flaky"]
    real = teacher_mod.score_batch
    scored: list[int] = []

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        scored.append(1)
        if len(scored) == 2:  # Ctrl-C while the second chunk is being scored
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(teacher_mod, "score_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(server, tmp_path, names, chunk_prompts=1)
    assert server.calls == 2 * N
    monkeypatch.setattr(teacher_mod, "score_batch", real)

    resumed = run(server, tmp_path, names, chunk_prompts=1)
    # chunk 1 from the journal, chunk 2's replies from the cache, only chunk 3 asked (2 retries included)
    assert (resumed.stats.resumed, resumed.stats.cache_hits, resumed.stats.calls) == (1, N, N + 2)
    reference = run(server, tmp_path / "fresh", names)
    assert resumed.texts == reference.texts == [GOOD, None, GOOD]
    assert resumed.stats.failures == reference.stats.failures
    assert resumed.stats.welfare_all_mean == pytest.approx(reference.stats.welfare_all_mean)


def test_config_is_validated() -> None:
    cfg = OpenAITeacherConfig(base_url="http://x/v1", model="m")
    assert (cfg.n, cfg.temperature, cfg.cache_path) == (9, 1.0, Path(".teacher-cache/teacher.sqlite"))
    with pytest.raises(ValueError, match="extra_body must be JSON-serialisable"):
        OpenAITeacherConfig(base_url="http://x/v1", model="m", extra_body={"bad": object()})
    with pytest.raises(ValueError, match="n"):
        OpenAITeacherConfig(base_url="http://x/v1", model="m", n=0)
    with pytest.raises(ValueError, match="extra"):
        OpenAITeacherConfig(base_url="http://x/v1", model="m", nope=1)


# ------------------------------------------------------------------------------------------------- the stage


def _write_curated(root: Path) -> None:
    rows = [
        {"uid": "a", "question": "What is 6*7?"},
        {"uid": "b", "question": "all-bad: what is 6*7?"},
        {"uid": "c", "question": "What is 6*7?"},
    ]
    frame = pd.DataFrame(
        [
            {
                **r,
                "source": "math-hard",
                "split": "train",
                "label": "answer",
                "ground_truth": "42",
                "answer": "42",
                "extra_info": json.dumps({"index": i}),
                "messages": "[]",
            }
            for i, r in enumerate(rows)
        ]
    )
    (root / "artifacts" / "curated").mkdir(parents=True)
    frame.to_parquet(root / "artifacts" / "curated" / "curated.parquet", index=False)


def test_demonstrations_stage_with_the_openai_teacher(server: FakeOpenAIServer, tmp_path: Path) -> None:
    _write_curated(tmp_path)
    teacher_cfg = {
        "base_url": server.base_url,
        "model": "teacher-test",
        "n": N,
        "timeout_s": 2.0,
        "backoff_s": 0.01,
        "cache_path": ".teacher-cache/teacher.sqlite",  # relative: resolved against the project root
    }
    params = {
        "curate": {"prompt_style": "compact"},
        "demonstrations": {"teacher": "openai", "judge": "rule", "openai": teacher_cfg},
        "reward": {},
    }
    result = demonstrations_stage(tmp_path, parse_params(params), track=False)
    rows = [json.loads(line) for line in result.path.read_text().splitlines()]
    assert [r["uid"] for r in rows] == ["a", "c"] and result.count == 2  # b had no valid candidate
    assert all(r["teacher"] == "openai:teacher-test" and r["completion"][0]["content"] == GOOD for r in rows)
    assert set(rows[0]) == {
        "uid",
        "data_source",
        "split",
        "prompt",
        "completion",
        "ground_truth",
        "extra_info",
        "teacher",
    }
    assert rows[0]["prompt"][-1]["content"].endswith("Question: What is 6*7?")
    assert (tmp_path / ".teacher-cache" / "teacher.sqlite").exists()
    assert server.calls == 2 * N  # rows a and c ask the same requests: sent once
    assert result.metrics["teacher_kept"] == 2 and result.metrics["teacher_dropped_no_strict_candidate"] == 1
    assert result.metrics["teacher_deduplicated"] == N
    assert (
        "Teacher (teacher-test, best of 6)" in (tmp_path / "artifacts" / "demonstrations" / "summary.md").read_text()
    )

    params["demonstrations"]["teacher"] = "rule"
    rule = demonstrations_stage(tmp_path, parse_params(params), track=False)
    rule_rows = [json.loads(line) for line in rule.path.read_text().splitlines()]
    assert [r["teacher"] for r in rule_rows] == ["rule"] * 3 and "teacher_kept" not in rule.metrics

    params["demonstrations"]["teacher"] = "oracle"
    with pytest.raises(ParamsError, match=r"demonstrations\.teacher: Input should be 'rule' or 'openai'"):
        parse_params(params)
