"""`gtalign reward score`, run as the installed console script (a real process), as other tools will."""

import json
import subprocess
from pathlib import Path

from conftest import BIN

from gtalign.game import CELLS

GTALIGN = str(BIN / "gtalign")
PAYOFF = json.dumps({c: {"LLM": 2.0, "user": 1.0} for c in CELLS})
GOOD = f"<thinking>t</thinking><payoff>{PAYOFF}</payoff><analyze>a</analyze><response>The answer is 4.</response>"


def _run(tmp_path: Path, lines: list[str], *args: str) -> tuple[list[dict], subprocess.CompletedProcess]:
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = subprocess.run(
        [GTALIGN, "reward", "score", str(src), "--output", str(dst), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    out = [json.loads(x) for x in dst.read_text().splitlines()] if dst.exists() else []
    return out, proc


def test_one_line_per_input_line_in_order_bad_lines_included(tmp_path):
    row = {"completion": GOOD, "data_source": "math-hard", "ground_truth": "4", "judge_score": 1}
    lines = [
        json.dumps(row),
        "{not json",
        json.dumps({**row, "data_source": "nope"}),
        json.dumps({k: v for k, v in row.items() if k != "ground_truth"}),
        json.dumps([1, 2]),
        "",
        json.dumps({**row, "completion": "no tags"}),
        json.dumps({**row, "judge_score": None}),
        json.dumps({**row, "judge_score": "1"}),
        json.dumps({**row, "extra_info": '{"single_turn_prompt": "q"}'}),
    ]
    out, proc = _run(tmp_path, lines, "--max-judge-failure-rate", "0.2")
    assert proc.returncode == 0, proc.stderr
    assert len(out) == len(lines)
    errors = [o["error"] for o in out]
    assert errors[0] is None and out[0]["score"] > 0.5
    assert errors[1].startswith("input: line 2: bad JSON line")
    assert (
        errors[2] == "input: unknown data_source 'nope'; expected one of math-hard, medium, wildguard, ambig_qa, "
        "minerva, advbench, abg-coqa"
    )
    assert errors[3] == "input: line 4: missing field 'ground_truth'"
    assert errors[4] == "input: line 5: expected a JSON object, got list"
    assert errors[5].startswith("input: line 6: bad JSON line")
    assert errors[6] == "format: missing <response>…</response> block" and out[6]["score"] == 0.0
    assert errors[7].startswith("judge: missing judge_score") and out[7]["score"] is None
    assert errors[8] == "input: line 9: field 'judge_score' must be a number or null, got '1'"
    assert errors[9] is None and out[9]["score"] == out[0]["score"]
    for o in out:
        assert {"score", "user_reward", "llm_reward", "answer_user", "format", "payoff", "latency", "error"} <= set(o)
    assert "rows" in proc.stderr and "10" in proc.stderr and "mean score" in proc.stderr
    # past the default failure rate (1 of 10 > 5 %) the run fails, after writing every line
    out, strict = _run(tmp_path, lines)
    assert len(out) == len(lines)
    assert strict.returncode == 3 and "judge failures 1/10" in strict.stderr


def test_aggregation_flag_and_params_file(tmp_path):
    row = json.dumps({"completion": GOOD, "data_source": "math-hard", "ground_truth": "4", "judge_score": 1})
    (cd,), _ = _run(tmp_path, [row], "--aggregation", "cobb_douglas")
    (lin,), _ = _run(tmp_path, [row], "--aggregation", "linear")
    assert lin["score"] == (cd["user_reward"] + cd["llm_reward"]) / 2
    (tmp_path / "params.yaml").write_text("reward:\n  aggregation: user\n")
    (user,), _ = _run(tmp_path, [row])
    assert user["score"] == cd["user_reward"]


def test_usage_errors_are_clear(tmp_path):
    proc = subprocess.run(
        [GTALIGN, "reward", "score", str(tmp_path / "missing.jsonl"), "-o", "x.jsonl"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "missing.jsonl: no such input file" in proc.stderr
    _, bad_judge = _run(tmp_path, ["{}"], "--judge", "oracle")
    assert bad_judge.returncode == 2 and "--judge must be one of column, rule, openai" in bad_judge.stderr
    (tmp_path / "params.yaml").write_text("reward:\n  user:\n    answr: 1\n")
    _, bad_params = _run(tmp_path, ["{}"])
    assert (
        bad_params.returncode == 2
        and "params.yaml: reward.user.answr: Extra inputs are not permitted" in bad_params.stderr
    )
