"""The product's main job end to end: `gtalign demo` (what `make demo` runs) on the tiny CPU preset, in a fresh copy
of the project, from raw data to a champion and a report; the paper's directions asserted from its own outputs.

The run itself is the session fixture `demo_run` (tests/conftest.py); these tests only read what it left.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import httpx
import pandas as pd
import pytest
from conftest import BIN, project_env
from mlflow.tracking import MlflowClient

from gtalign.config import load_typed_params
from gtalign.evaluate.directions import paper_directions
from gtalign.evaluate.generate import GENERATIONS_FILE, load_generations
from gtalign.modeling import HELDOUT_GENERATIONS_FILE
from gtalign.sources import IN_DOMAIN_SOURCES, OOD_SOURCES

pytestmark = pytest.mark.slow

IN_DOMAIN = list(IN_DOMAIN_SOURCES)
OOD = list(OOD_SOURCES)


def _evaluation(demo_run) -> dict[str, float]:
    return json.loads((demo_run.root / "artifacts" / "metrics" / "evaluation.json").read_text())


def _mean(metrics: dict[str, float], model: str, metric: str, sources: list[str]) -> float:
    return sum(metrics[f"{model}/{s}/{metric}"] for s in sources) / len(sources)


def test_demo_prints_the_champion_and_where_the_report_is(demo_run):
    print(f"demo wall time {demo_run.seconds:.0f} s")
    out = demo_run.output
    report = demo_run.root / "artifacts" / "report" / "report.md"
    assert str(report) in out.replace("\n", "")  # rich may wrap the long path
    assert "welfare · cobb_douglas" in out and "welfare · consistency" in out and "welfare · sft" in out
    assert "direction · sft_format_validity" in out and "direction · cobb_douglas_beats_sft" in out
    promotion = json.loads((demo_run.root / "artifacts" / "metrics" / "promotion.json").read_text())
    assert f"champion v{promotion['champion']}" in out


def test_the_gate_picks_the_champion_among_the_variants_by_their_reasoning_and_welfare(demo_run):
    """GTAlign (the published reward) and its matrix-consistency variant are registered in turn (cobb_douglas v1,
    consistency v2); the gate's floor on the model's own matrix reasoning (`registry.gate.floors`, issue 13's 0.9)
    comes before welfare, so a candidate under it is rejected, the first one over it (with no champion before it)
    is crowned, and whichever is champion names its own matrix's optimum in >= 0.9 of its answers."""
    cfg = load_typed_params(demo_run.root / "params.yaml").registry
    floor = cfg.gate.floors["matrix_analyze_mean"]
    m = _evaluation(demo_run)
    promotion = json.loads((demo_run.root / "artifacts" / "metrics" / "promotion.json").read_text())
    judged = promotion["candidates"]
    assert list(judged) == ["cobb_douglas", "consistency"] == cfg.candidates
    seen = {v: (d["decision"], m[f"{v}/matrix_analyze_mean"], m[f"{v}/welfare_mean"]) for v, d in judged.items()}
    print(seen)
    champion = None
    for variant, decision in judged.items():
        if m[f"{variant}/matrix_analyze_mean"] < floor:
            assert decision["decision"] == "rejected", seen
        elif champion is None:
            assert decision["decision"] == "promoted", seen
        if decision["decision"] == "promoted":
            champion = variant
    assert champion is not None and promotion["champion"] == judged[champion]["champion"], seen
    assert m[f"{champion}/matrix_analyze_mean"] >= floor  # issue 13: the champion keeps its matrix reasoning


def test_sft_and_the_champion_leave_the_direct_answer_and_the_champion_does_the_cell_it_names(demo_run):
    """Issue 13's behaviour targets on every test row: the policy leaves the direct-answer default on >= 0.15 of the
    in-domain prompts (the hedge, `demonstrations.ambiguity: hedge`: 0.29 for SFT and 0.32-0.36 for GTAlign over three
    RL seeds on 2026-12-06, 0.00 with the label recipe), and the champion's response does the action of the cell its
    `<analyze>` names in >= 0.9 of the answers (0.92-0.96). SFT's own numbers are printed, not asserted: its follow
    rate was 0.98 and 0.89 and its own-matrix analysis 0.91 and 0.86 in runs of the former recipe, within noise of the
    0.9 target (the champion's analysis is asserted by the gate test above)."""
    m = _evaluation(demo_run)
    promotion = json.loads((demo_run.root / "artifacts" / "metrics" / "promotion.json").read_text())
    [champion] = [v for v, d in promotion["candidates"].items() if d["version"] == promotion["champion"]]
    seen = {
        model: {
            k: round(m[f"{model}/{k}"], 3)
            for k in ("non_da_mean_in_domain", "follows_named_mean", "matrix_analyze_mean")
        }
        for model in ("sft", champion)
    }
    print(seen, {model: m[f"{model}/ambig_qa/non_da_gap"] for model in seen})  # the gap's interval: the report
    assert seen["sft"]["non_da_mean_in_domain"] >= 0.15 and seen[champion]["non_da_mean_in_domain"] >= 0.15, seen
    assert seen[champion]["follows_named_mean"] >= 0.9, seen


def test_every_model_is_evaluated_on_every_test_row_of_the_tiny_preset(demo_run):
    """Issue 13's "verdicts that are not noise": the evaluation reads all 40 test rows per source, not a sample."""
    curated = pd.read_parquet(demo_run.root / "artifacts" / "curated" / "curated.parquet")
    test = curated[curated["split"] == "test"]
    assert test.groupby("source").size().to_dict() == dict.fromkeys(IN_DOMAIN + OOD, 40)
    for model in ("base", "sft", "cobb_douglas", "consistency"):
        generations = load_generations(demo_run.root / "artifacts" / "evaluation" / model / GENERATIONS_FILE)
        assert sorted(g.uid for g in generations) == sorted(test["uid"].astype(str)), model


def test_sft_lifts_strict_format_validity_on_the_test_prompts(demo_run):
    m = _evaluation(demo_run)
    base, sft = (_mean(m, k, "format_strict", IN_DOMAIN) for k in ("base", "sft"))
    print(f"strict validity, in-domain test prompts: base {base:.3f} -> SFT {sft:.3f}")
    print("OOD:", {s: m[f"sft/{s}/format_strict"] for s in OOD})
    assert base <= 0.05  # the untrained model never writes the four blocks
    assert sft >= 0.9  # the target


def test_gtalign_rl_welfare_against_the_sft_model(demo_run):
    """The issue's target is GTAlign welfare > SFT welfare. On this 4M-parameter model the difference moves with the
    RL seed (`make paper`, 2026-12-06: +0.034, -0.003, +0.030, significant on 2 of 3; the hedge-only recipe: on none;
    docs/rl_on_the_tiny_model.md), and another machine's float order is another trajectory, so this asserts
    only what holds on any machine: RL's dev gain is measured against SFT on the same dev prompts (and printed), it
    costs no welfare beyond noise on the test prompts (the paired interval's upper end is above 0), and
    `directions/cobb_douglas_beats_sft` says which way the point estimates went."""
    rl = json.loads((demo_run.root / "artifacts" / "metrics" / "rl-cobb_douglas.json").read_text())
    print(f"dev prompts: SFT {rl['init_welfare']:.4f} -> GTAlign RL {rl['heldout_welfare']:.4f}")
    assert rl["welfare_gain"] == pytest.approx(rl["heldout_welfare"] - rl["init_welfare"])
    models = demo_run.root / "artifacts" / "models"
    dev = {m: (models / m / HELDOUT_GENERATIONS_FILE).read_text().splitlines() for m in ("sft", "rl-cobb_douglas")}
    uids = {m: [json.loads(line)["uid"] for line in lines] for m, lines in dev.items()}
    assert uids["sft"] and uids["sft"] == uids["rl-cobb_douglas"]  # the SFT stage's dev prompts, each generated
    m = _evaluation(demo_run)
    sft, gtalign = m["sft/welfare_mean"], m["cobb_douglas/welfare_mean"]
    [beats] = [d for d in paper_directions(m) if d.name == "cobb_douglas_beats_sft"]
    seen = f"SFT {sft:.4f} -> GTAlign RL {gtalign:.4f}, paired {gtalign - sft:+.4f} {beats.interval}"
    print(f"test prompts, mean over the 7 sources: {seen}")
    print({s: (round(m[f"sft/{s}/welfare"], 4), round(m[f"cobb_douglas/{s}/welfare"], 4)) for s in IN_DOMAIN + OOD})
    # every prompt scored for both; the flat metrics are rounded to 6 decimals
    assert m["paired/cobb_douglas-sft/welfare_diff"] == pytest.approx(gtalign - sft, abs=2e-6)
    assert beats.interval is not None and beats.interval[1] > 0, f"significantly worse than SFT: {seen}"
    assert m["directions/cobb_douglas_beats_sft"] == float(gtalign > sft)


def test_every_stage_is_an_mlflow_run_and_evaluations_link_their_training_runs(demo_run):
    client = MlflowClient(tracking_uri=f"sqlite:///{demo_run.root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("gtalign").experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    expected = {"curate", "demonstrations", "base_model", "sft", "rl-cobb_douglas", "rl-consistency", "steering_eval"}
    assert expected | {f"evaluate:{m}" for m in ("base", "sft", "cobb_douglas", "consistency")} <= set(by_name)
    for model, trained_by in (("sft", "sft"), ("cobb_douglas", "rl-cobb_douglas")):
        tags = by_name[f"evaluate:{model}"].data.tags
        assert tags["gtalign.evaluates_run"] == by_name[trained_by].info.run_id
    rl = by_name["rl-cobb_douglas"].data
    assert "heldout_welfare" in rl.metrics and "welfare/U/all" in rl.metrics
    assert rl.tags["gtalign.trainer"] == "trl.GRPOTrainer"


def test_the_report_holds_the_paper_tables_and_the_steering_numbers(demo_run):
    md = (demo_run.root / "artifacts" / "report" / "report.md").read_text()
    headings = ("## Table 3", "## Table 4", "## Table 5", "## Table 6", "## Table 7", "## Pricing steering")
    for heading in (*headings, "## Does the assistant play the game?"):
        assert heading in md
    steering = json.loads((demo_run.root / "artifacts" / "metrics" / "steering.json").read_text())
    (price,) = load_typed_params(demo_run.root / "params.yaml").steering.eval.prices or []
    api = f"subscription->api @{price:g}"
    assert steering[f"{api}/all/n"] == 35  # 5 test prompts for each of the 7 sources
    assert steering[f"solver/{api}/all/n"] == 35  # the solver writing <analyze>, side by side
    assert f"| solver/{api} |" in md and f"| {api} |" in md  # the time table
    assert "artifacts/models/rl-cobb_douglas" in md  # the steered model is the GTAlign policy
    # the steering claim is counted from the answers: of the moved optima, those that the response does, and of
    # those the unsteered response did not already do, those it changed to (the records say which)
    records = [json.loads(x) for x in (demo_run.root / "artifacts" / "steering" / "records.jsonl").open()]
    for label in (api, f"solver/{api}"):
        moved = [r for r in records if r["mode"] == label and r["intended_from"] not in (None, r["intended_to"])]
        needed = [r for r in moved if r["base_action"] != r["intended_to"]]
        assert steering[f"{label}/all/moved"] == len(moved) and steering[f"{label}/all/flip_needed"] == len(needed)
        if needed:
            done = sum(r["steered_action"] == r["intended_to"] for r in needed)
            assert steering[f"{label}/all/flipped"] == done / len(needed)


def test_the_champion_answers_in_a_fresh_process(demo_run):
    """`models:/gtalign-assistant@champion` from the demo's registry, in an interpreter started outside the project
    (so the model brings its own code), answers a chat with the four blocks."""
    code = (
        "import json, mlflow\n"
        "m = mlflow.pyfunc.load_model('models:/gtalign-assistant@champion')\n"
        "chat = [{'messages': [{'role': 'user', 'content': 'What is 2 + 3?'}]}]\n"
        "print(json.dumps(m.predict(chat, params={'max_new_tokens': 320}).to_dict('records')))\n"
    )
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{demo_run.root / 'mlflow.db'}", "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=demo_run.root.parent, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = json.loads(proc.stdout.strip().splitlines()[-1])
    print(row["completion"])
    assert row["completion"].startswith("<thinking>") and row["format_ok"] is True, row["format_error"]
    assert row["response"]


def test_serve_the_champion_and_call_it_in_both_pricing_modes(demo_run):
    """`gtalign serve` (the default model: the registry's champion, with the steering it was registered with) as its
    own process on loopback; the official client asks held-out questions under subscription and API pricing. Under
    API pricing the served matrix is the policy's own matrix edited by the configured transform, and the reported
    optimum is that matrix's welfare optimum.
    """
    import openai

    from gtalign.data import load_curated, prompt_messages
    from gtalign.game import PayoffMatrix, optimal_cell
    from gtalign.steering import transform_for

    root = demo_run.root
    cfg = load_typed_params(root / "params.yaml").steering
    table = load_curated(root / "artifacts" / "curated")
    test = table[(table["split"] == "test") & table["source"].isin(["math-hard", "ambig_qa", "wildguard"])]
    rows = test.groupby("source").head(3).to_dict("records")  # short prompts: prompt + max_tokens fit the context
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = project_env(root, MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}")
    proc = subprocess.Popen(
        [str(BIN / "gtalign"), "serve", "--port", str(port), "--threads", "2"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "server did not come up in 120 s"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        # the champion is served with the steering it was registered with (the demo's: params.yaml `steering:`)
        steering = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).json()["steering"]
        assert steering["from"].startswith("models:/gtalign-assistant/"), steering
        assert steering["price_per_100_words"] == cfg.price_per_100_words and steering["analyze"] == cfg.analyze
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=120)
        (model,) = [m.id for m in client.models.list()]
        changed = 0
        for row in rows:
            messages = prompt_messages(row, "compact")
            native, api = (
                client.chat.completions.create(
                    model=model, messages=messages, max_tokens=256, extra_body={"pricing": p}
                )
                .choices[0]
                .message.gtalign
                for p in ("subscription", "api")
            )
            # no pricing edit under subscription: spliced only where the solver writes the analysis
            assert native["pricing"] == "subscription" and native["steered"] == native["solver_analyze"]
            if native["original_payoff"] is not None:
                assert native["payoff"] == native["original_payoff"]
            if api["original_payoff"] is None:  # the policy wrote no readable matrix: nothing to steer, and it says so
                assert not api["steered"]
                continue
            edited = transform_for("api", cfg)(PayoffMatrix.from_dict(api["original_payoff"]))
            assert api["payoff"] == edited.to_dict() and api["steered"]
            assert api["optimal_cell"] == optimal_cell(edited, cfg.welfare_rule)
            changed += native["action"] != api["action"]
        print(f"{len(rows)} questions, the action changed under API pricing for {changed}")
    finally:
        proc.terminate()
        proc.wait(30)


def _dvc(root, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(BIN / "dvc"), *args], cwd=root, env=project_env(root), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"dvc {' '.join(args)}: {proc.stderr[-3000:]}"
    return proc


def test_dvc_records_the_demo_as_dvc_repro_would(demo_run, tmp_path):
    """After `gtalign demo`, DVC knows every output: `dvc status` is clean (so `dvc repro` has nothing to do),
    `dvc metrics show` reads the demo's numbers, `dvc pull` works in place, and the trained models go to the
    `artifacts` remote and come back in a clone like the data does."""
    root = demo_run.root
    with demo_run.guard():  # git and DVC write in the project: no copy of it meanwhile
        printed = " ".join(demo_run.output.replace("│", " ").split())  # the summary table may wrap the value
        assert "dvc.lock records every stage; `dvc status`: up to date" in printed
        assert json.loads(_dvc(root, "status", "--json").stdout or "{}") == {}
        shown = json.loads(_dvc(root, "metrics", "show", "--json").stdout)
        [workspace] = shown.values()
        evaluation = workspace["data"]["artifacts/metrics/evaluation.json"]["data"]
        assert evaluation["cobb_douglas/welfare_mean"] == _evaluation(demo_run)["cobb_douglas/welfare_mean"]
        plots = json.loads(_dvc(root, "plots", "show", "--json").stdout)["data"]
        assert "artifacts/plots/sft_loss.csv" in plots
        _dvc(root, "pull", "--remote", "artifacts")  # nothing to fetch and nothing "unsaved" to refuse
        # the models travel: push (to the default `artifacts` remote beside the project), clone, pull
        _dvc(root, "push", "--remote", "artifacts")  # -r artifacts: the shared data store is never written
        subprocess.run(["git", "add", "dvc.lock"], cwd=root, check=True)
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "demo"], cwd=root, check=True
        )
        clone = tmp_path / "clone"
        subprocess.run(["git", "clone", "-q", str(root), str(clone)], check=True)
        remote = (root.parent / "gtalign-artifacts").resolve()  # .dvc/config: ../../gtalign-artifacts from .dvc/
        _dvc(clone, "remote", "modify", "--local", "artifacts", "url", str(remote))
        _dvc(clone, "pull", "--remote", "artifacts")
        model = "artifacts/models/rl-cobb_douglas/model.safetensors"
        assert (clone / model).read_bytes() == (root / model).read_bytes()
        assert json.loads(_dvc(clone, "status", "--json").stdout or "{}") == {}  # metrics and plots came along too
        assert json.loads((clone / "artifacts/metrics/evaluation.json").read_text()) == _evaluation(demo_run)
