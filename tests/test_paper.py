"""The `paper` preset's Table 5 direction, from the demo's own models: the user-only and llm-only reward baselines
trained from the demo's SFT model exactly as `make paper` trains them (`gtalign train rl --variant V`, the repo's
params.yaml), then `gtalign eval pipeline` over GTAlign and both baselines on the demo's test prompts.

It runs in a copy of the finished demo project (the demo's own outputs stay as the demo left them), so the base, SFT
and GTAlign generations are resumed, not redone: saved generations are keyed by model content, not path.
"""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import BIN, run_in

from gtalign.evaluate.directions import paper_directions

pytestmark = pytest.mark.slow

BASELINES = ("user", "llm")


@pytest.fixture(scope="module")
def paper_root(demo_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("paper") / "repo"
    skip = shutil.ignore_patterns(".dagster", "mlruns", "mlflow.db", "checkpoints", "rl-user", "rl-llm", "rl-linear")
    shutil.copytree(demo_run.root, root, ignore=skip)
    for variant in BASELINES:
        run_in([str(BIN / "gtalign"), "train", "rl", "--variant", variant, "--no-track"], root, timeout=1200)
    variants = ",".join(("cobb_douglas", *BASELINES))
    run_in([str(BIN / "gtalign"), "eval", "pipeline", "--set", f"pipeline.variants=[{variants}]"], root, timeout=1200)
    return root


def test_cobb_douglas_welfare_is_at_least_each_single_sided_baseline(paper_root, demo_run):
    m = json.loads((paper_root / "artifacts" / "metrics" / "evaluation.json").read_text())
    demo = json.loads((demo_run.root / "artifacts" / "metrics" / "evaluation.json").read_text())
    for model in ("base", "sft", "cobb_douglas"):  # resumed, not regenerated: the same numbers as the demo's
        assert m[f"{model}/welfare_mean"] == demo[f"{model}/welfare_mean"]
        copy, original = (r / f"artifacts/evaluation/{model}/generations.jsonl" for r in (paper_root, demo_run.root))
        assert copy.stat().st_mtime_ns == original.stat().st_mtime_ns  # copytree keeps it; a regeneration rewrites it
    models = ("sft", "cobb_douglas", *BASELINES)
    for k in models:
        print(f"{k}: welfare in-domain {m[f'{k}/welfare_mean_in_domain']:.4f}, all {m[f'{k}/welfare_mean']:.4f}")
    directions = {d.name: d for d in paper_directions(m)}
    for b in BASELINES:
        d = directions[f"cobb_douglas_vs_{b}"]
        assert d.value == m["cobb_douglas/welfare_mean"] and d.reference == m[f"{b}/welfare_mean"]
        assert d.holds, f"Cobb-Douglas {d.value:.4f} < {b}-only {d.reference:.4f} (mean over the 7 sources)"
        assert m[f"directions/cobb_douglas_vs_{b}"] == 1.0  # what `dvc metrics show` and the Dagster check read
    assert "## The paper's directions on this run" in (paper_root / "artifacts" / "report" / "report.md").read_text()
