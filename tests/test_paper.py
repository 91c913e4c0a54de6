"""The `paper` preset's Table 5 comparison, from the demo's own models: the llm-only reward baseline trained from
the demo's SFT model with the command and params `make paper` uses (`gtalign train rl --variant llm`), then
`gtalign eval pipeline` over GTAlign and the baseline on the demo's test prompts.

One baseline, not all of `make paper`'s: each costs CI a GRPO run and an evaluation (about 4 minutes here), and the
path is the same for every variant (`test_pipeline_training.py` covers the variant loop). No direction is asserted:
on the tiny model each one has gone both ways (llm-only vs Cobb-Douglas: clear of 0 in Cobb-Douglas's favour with
the label recipe, in llm-only's with the hedge; user-only straddles 0), so the verdicts are recorded and reported.

It runs in a copy of the finished demo project (the demo's own outputs stay as the demo left them), so the base, SFT
and GTAlign generations are resumed, not redone: saved generations are keyed by model content, not path.
"""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from conftest import BIN, run_in

from gtalign.evaluate.directions import paper_directions
from gtalign.modeling import model_identity

pytestmark = pytest.mark.slow

BASELINES = ("llm",)


@pytest.fixture(scope="module")
def paper_root(demo_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("paper") / "repo"
    skip = shutil.ignore_patterns(".dagster", "mlruns", "mlflow.db", "checkpoints", "rl-user", "rl-llm", "rl-linear")
    with demo_run.guard():  # the demo's own tests may be writing in it on the other worker
        shutil.copytree(demo_run.root, root, ignore=skip)
    cmd = [str(BIN / "gtalign"), "train", "rl", "--no-track", "--no-eval", "--variant"]  # the dev eval: not needed
    for variant in BASELINES:
        run_in([*cmd, variant], root, timeout=1200)
    variants = ",".join(("cobb_douglas", *BASELINES))
    run_in([str(BIN / "gtalign"), "eval", "pipeline", "--set", f"pipeline.variants=[{variants}]"], root, timeout=600)
    return root


def test_each_baseline_trains_from_the_sft_model_with_its_own_reward_and_the_same_budget(paper_root):
    params = yaml.safe_load((paper_root / "params.yaml").read_text())
    sft = model_identity(paper_root / "artifacts" / "models" / "sft")
    for variant in BASELINES:
        stamp = paper_root / "artifacts" / "checkpoints" / f"rl-{variant}" / "gtalign_fingerprint.json"
        config = json.loads(stamp.read_text())["config"]
        assert config["reward"]["aggregation"] == config["rl"]["variant"] == variant
        assert {k: config["rl"]["args"][k] for k in ("max_steps", "seed", "learning_rate")} == {
            k: params["rl"]["args"][k] for k in ("max_steps", "seed", "learning_rate")
        }  # GTAlign's budget: the repo's params.yaml, as `make paper` trains them
        assert config["init"][1] == sft  # started from the demo's SFT model, by content
        assert model_identity(paper_root / "artifacts" / "models" / f"rl-{variant}") != sft  # and was updated


def test_the_llm_only_baseline_is_compared_with_cobb_douglas_on_every_row_and_its_verdict_recorded(
    paper_root, demo_run
):
    """Table 5's comparison (Cobb-Douglas against llm-only), measured and recorded, not asserted: its direction is
    noise on the tiny model. With the label recipe Cobb-Douglas was ahead on two machines (20 prompts per source:
    paired +0.044 [+0.018, +0.072] and +0.039 [+0.018, +0.062]; every test row: +0.031 [+0.014, +0.051]); with
    the hedge (2026-12-05, every test row) llm-only was ahead, 0.4118 vs 0.4307, -0.019 [-0.037, -0.001], all of it
    format breaks on abg-coqa's long conversations (welfare 0.43 vs 0.57; every other source within 0.02, most in
    Cobb-Douglas's favour). So this asserts what holds on any machine: the baseline is evaluated on every test row,
    the paired difference and its interval are the two models' own numbers, and the recorded verdict
    `directions/cobb_douglas_vs_llm` says which way the point estimates went; the numbers are printed."""
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
        assert len(prompts) == 280  # every test row of the tiny preset, as the demo's models: 40 per source
        d = directions[f"cobb_douglas_vs_{b}"]
        key = f"paired/cobb_douglas-{b}/welfare_diff"
        diff, lo, hi = m[key], m[f"{key}_lo"], m[f"{key}_hi"]
        seen = f"Cobb-Douglas {d.value:.4f} vs {b}-only {d.reference:.4f}: paired {diff:+.4f} [{lo:+.4f}, {hi:+.4f}]"
        print(seen, "(mean over the 7 sources)")
        assert d.value == m["cobb_douglas/welfare_mean"] and d.reference == m[f"{b}/welfare_mean"]
        assert diff == pytest.approx(d.value - d.reference, abs=2e-6)  # every prompt scored for both; 6 decimals
        assert d.interval == (lo, hi) and lo <= diff <= hi
        assert m[f"directions/cobb_douglas_vs_{b}"] == float(d.value >= d.reference)  # what DVC and Dagster read
    report = (paper_root / "artifacts" / "report" / "report.md").read_text()
    directions_section = report.split("## The paper's directions on this run")[1].split("\n## ")[0]
    for b in BASELINES:  # the evaluated baseline gets a verdict; the ones this test did not train say so
        [row] = [line for line in directions_section.splitlines() if f"the {b}-only reward baseline" in line]
        assert row.endswith(("| holds |", "| **does not hold** |")), row
