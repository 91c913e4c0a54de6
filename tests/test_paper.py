"""The `paper` preset's workflow on top of the demo's own models: the user-only and llm-only reward baselines trained
from the demo's SFT model with the command `make paper` uses (`gtalign train rl --variant V`), then
`gtalign eval pipeline` over GTAlign and both baselines on the demo's test prompts, with the Table 5 directions.

The baselines train for 2 GRPO steps here: this test is about the workflow (each variant trains with its own
reward, the evaluation resumes the demo's generations and adds the baselines', the directions are computed from the
numbers), not about the result. The result, Cobb-Douglas >= user-only and llm-only at the full training budget, is
what `make paper` itself reports (README: it takes as long as the rest of `make test`).

It runs in a copy of the finished demo project (the demo's own outputs stay as the demo left them), so the base, SFT
and GTAlign generations are resumed, not redone: saved generations are keyed by model content, not path.
"""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import BIN, run_in

from gtalign.evaluate.directions import paper_directions
from gtalign.modeling import model_identity

pytestmark = pytest.mark.slow

BASELINES = ("user", "llm")
STEPS = 2


@pytest.fixture(scope="module")
def paper_root(demo_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("paper") / "repo"
    skip = shutil.ignore_patterns(".dagster", "mlruns", "mlflow.db", "checkpoints", "rl-user", "rl-llm", "rl-linear")
    shutil.copytree(demo_run.root, root, ignore=skip)
    for variant in BASELINES:
        cmd = ["train", "rl", "--variant", variant, "--set", f"rl.max_steps={STEPS}", "--no-track", "--no-eval"]
        run_in([str(BIN / "gtalign"), *cmd], root, timeout=600)
    variants = ",".join(("cobb_douglas", *BASELINES))
    run_in([str(BIN / "gtalign"), "eval", "pipeline", "--set", f"pipeline.variants=[{variants}]"], root, timeout=600)
    return root


def test_each_baseline_trains_from_the_sft_model_with_its_own_reward(paper_root):
    sft = model_identity(paper_root / "artifacts" / "models" / "sft")
    for variant in BASELINES:
        stamp = paper_root / "artifacts" / "checkpoints" / f"rl-{variant}" / "gtalign_fingerprint.json"
        config = json.loads(stamp.read_text())["config"]
        assert config["reward"]["aggregation"] == variant and config["rl"]["max_steps"] == STEPS
        assert config["init"][1] == sft  # started from the demo's SFT model, by content
        assert model_identity(paper_root / "artifacts" / "models" / f"rl-{variant}") != sft  # and was updated


def test_evaluation_resumes_the_demo_and_adds_the_baselines_with_the_table5_directions(paper_root, demo_run):
    m = json.loads((paper_root / "artifacts" / "metrics" / "evaluation.json").read_text())
    demo = json.loads((demo_run.root / "artifacts" / "metrics" / "evaluation.json").read_text())
    for model in ("base", "sft", "cobb_douglas"):  # resumed, not regenerated: the same numbers as the demo's
        assert m[f"{model}/welfare_mean"] == demo[f"{model}/welfare_mean"]
        copy, original = (r / f"artifacts/evaluation/{model}/generations.jsonl" for r in (paper_root, demo_run.root))
        assert copy.stat().st_mtime_ns == original.stat().st_mtime_ns  # copytree keeps it; a regeneration rewrites it
    assert not any(k.startswith(("user/", "llm/")) for k in demo)
    directions = {d.name: d for d in paper_directions(m)}
    for b in BASELINES:
        prompts = (paper_root / f"artifacts/evaluation/{b}/generations.jsonl").read_text().splitlines()
        assert len(prompts) == 140  # the demo's test prompts: 20 per source
        print(f"{b}-only after {STEPS} steps: welfare {m[f'{b}/welfare_mean']:.4f}")
        d = directions[f"cobb_douglas_vs_{b}"]
        assert d.value == m["cobb_douglas/welfare_mean"] and d.reference == m[f"{b}/welfare_mean"]
        assert d.holds == (d.value >= d.reference)
        assert m[f"directions/cobb_douglas_vs_{b}"] == float(d.holds)  # what `dvc metrics show` and Dagster read
        low, high = m[f"paired/cobb_douglas-{b}/welfare_diff_lo"], m[f"paired/cobb_douglas-{b}/welfare_diff_hi"]
        assert low <= m[f"paired/cobb_douglas-{b}/welfare_diff"] <= high
    report = (paper_root / "artifacts" / "report" / "report.md").read_text()
    assert "## The paper's directions on this run" in report and "not checked" not in report.split("## The paper")[1]
