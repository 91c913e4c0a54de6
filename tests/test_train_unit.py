"""Fast tests of the training layer: normalisation, the reward adapter, checkpoints, params plumbing, reports."""

import json
import math
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from gtalign.reward import RewardConfig, RewardInput, score_batch
from gtalign.reward.judges.base import JudgeVerdict
from gtalign.reward.normalize import METHODS, minmax, normalize, rank, robust_z, zscore
from gtalign.reward.score import COMPONENTS
from gtalign.train.common import (
    FINGERPRINT_FILE,
    HeldOutRow,
    curve_markdown,
    last_checkpoint,
    prepare_checkpoints,
    score_heldout,
    write_curve,
)
from gtalign.train.reward_fn import WelfareReward, batch_metrics, completion_text

PAYOFF = (
    '{"DQ_AQ": {"LLM": 2.0, "user": 3.1}, "DQ_CQ": {"LLM": 1.0, "user": 1.5}, "DQ_DA": {"LLM": 3.2, "user": 4.0}, '
    '"VQ_AQ": {"LLM": 1.1, "user": 1.2}, "VQ_CQ": {"LLM": 0.5, "user": 0.9}, "VQ_DA": {"LLM": 2.0, "user": 1.0}}'
)


def completion(response: str, thinking: str = "The question is clear, so DQ.") -> str:
    return (
        f"<thinking>{thinking}</thinking><payoff>{PAYOFF}</payoff>"
        f"<analyze>Pareto frontier: DQ_DA. Chosen: DQ_DA.</analyze><response>{response}</response>"
    )


class StubJudge:
    """Verdicts by response text: a number in the text after 'verdict=' or a failure for 'FAIL'."""

    name = "stub"

    def __init__(self) -> None:
        self.calls = 0

    def judge(self, requests):
        self.calls += 1
        out = []
        for r in requests:
            if "FAIL" in r.response:
                out.append(JudgeVerdict(None, "stub: no verdict"))
            else:
                out.append(JudgeVerdict(1.0 if "right" in r.response else 0.0))
        return out


# ---------------------------------------------------------------------------------------------------------------
# normalisation
# ---------------------------------------------------------------------------------------------------------------
def test_zscore_exact_per_group():
    assert zscore([1.0, 3.0, 10.0, 20.0], ["a", "a", "b", "b"]) == [-1.0, 1.0, -1.0, 1.0]
    out = zscore([1.0, 2.0, 3.0], ["a"] * 3)
    sd = math.sqrt(2 / 3)
    assert out == pytest.approx([-1 / sd, 0.0, 1 / sd])


def test_minmax_exact_and_degenerate():
    assert minmax([2.0, 4.0, 3.0, 7.0], ["a", "a", "a", "b"]) == [0.0, 1.0, 0.5, 0.5]


def test_robust_z_uses_median_and_mad():
    # median 3, |x - 3| = [2, 1, 0, 1, 97] -> MAD 1 -> scale 1.4826; the outlier does not move the others
    out = robust_z([1.0, 2.0, 3.0, 4.0, 100.0], ["a"] * 5)
    assert out == pytest.approx([-2 / 1.4826, -1 / 1.4826, 0.0, 1 / 1.4826, 97 / 1.4826])


def test_robust_z_falls_back_to_std_when_mad_is_zero():
    out = robust_z([0.0, 0.0, 0.0, 1.0], ["a"] * 4)
    assert out == pytest.approx([0.0, 0.0, 0.0, 1 / math.sqrt(3 / 16)])


def test_rank_with_ties_scaled_to_unit_interval():
    assert rank([3.0, 1.0, 1.0, 2.0], ["a"] * 4) == pytest.approx([1.0, 1 / 6, 1 / 6, 2 / 3])
    assert rank([5.0], ["a"]) == [0.5]


@pytest.mark.parametrize("method", [m for m in METHODS if m != "none"])
def test_none_and_nan_stay_missing_and_are_left_out_of_statistics(method):
    with_missing = normalize([1.0, None, 3.0, float("nan"), 2.0], ["a"] * 5, method)
    without = normalize([1.0, 3.0, 2.0], ["a"] * 3, method)
    assert with_missing[1] is None and with_missing[3] is None
    assert [with_missing[0], with_missing[2], with_missing[4]] == pytest.approx(without)


@pytest.mark.parametrize("method", ["zscore", "robust_z"])
def test_constant_group_maps_to_zero(method):
    assert normalize([0.7, 0.7, 0.7], ["s"] * 3, method) == [0.0, 0.0, 0.0]


def test_normalize_rejects_bad_input():
    with pytest.raises(ValueError, match="length"):
        normalize([1.0], ["a", "b"])
    with pytest.raises(ValueError, match="unknown"):
        normalize([1.0], ["a"], "softmax")
    assert normalize([1.0, None], ["a", "a"], "none") == [1.0, None]


# ---------------------------------------------------------------------------------------------------------------
# the reward adapter: the same numbers as score_batch, everything else logged
# ---------------------------------------------------------------------------------------------------------------
ROWS = [
    (completion("The answer is right."), "math-hard", "4"),
    (completion("The answer is wrong."), "math-hard", "4"),
    (completion("This is right too, I think."), "ambig_qa", "singleAnswer###x"),
    ("no tags at all", "ambig_qa", "singleAnswer###x"),
    (completion("FAIL"), "wildguard", "harmful"),
]


def _call(reward, rows=ROWS, log=None):
    return reward(
        prompts=[[{"role": "user", "content": "q"}]] * len(rows),
        completions=[[{"role": "assistant", "content": c}] for c, _, _ in rows],
        data_source=[s for _, s, _ in rows],
        ground_truth=[g for _, _, g in rows],
        extra_info=["{}"] * len(rows),
        log_metric=log,
        completion_ids=[[1]] * len(rows),
        trainer_state=None,
        log_extra=lambda *a: None,
    )


@pytest.mark.parametrize("aggregation", ["cobb_douglas", "user", "llm", "linear"])
def test_adapter_returns_exactly_score_batch(aggregation):
    cfg = RewardConfig(aggregation=aggregation)
    reward = WelfareReward(StubJudge(), cfg)
    got = _call(reward)
    want = [r.score for r in score_batch([RewardInput(c, s, g, {}) for c, s, g in ROWS], StubJudge(), cfg)]
    assert got == want
    assert got[3] == 0.0  # unparsable: the published zero, not a missing reward
    assert got[4] is None  # judge failure: missing (TRL turns it into NaN), never a zero


def test_adapter_logs_u_l_components_errors_per_source():
    logged: dict[str, list[float]] = defaultdict(list)
    reward = WelfareReward(StubJudge(), RewardConfig())
    _call(reward, log=lambda name, value: logged[name].append(value))
    results = score_batch([RewardInput(c, s, g, {}) for c, s, g in ROWS], StubJudge(), RewardConfig())
    math_rows = [r for r, (_, s, _) in zip(results, ROWS, strict=True) if s == "math-hard"]
    assert logged["welfare/U/math-hard"] == [pytest.approx(sum(r.user_reward for r in math_rows) / 2)]
    assert logged["welfare/L/math-hard"] == [pytest.approx(sum(r.llm_reward for r in math_rows) / 2)]
    assert logged["welfare/score/all"] == [
        pytest.approx((results[0].score + results[1].score + results[2].score + results[3].score) / 4)
    ]
    for name in ("answer_user", "answer_llm", "format", "payoff", "length_user", "length_llm", "latency"):
        assert f"welfare/{name}/math-hard" in logged and f"welfare/{name}/all" in logged
    assert "welfare/matrix/math-hard" not in logged  # the term is off: no value to average
    assert logged["welfare/judge_failures/wildguard"] == [1.0]
    assert logged["welfare/judge_failures/all"] == [1.0]
    assert logged["welfare/format_errors/ambig_qa"] == [1.0]
    assert logged["welfare/format_error_rate/all"] == [pytest.approx(1 / 5)]
    assert reward.totals.completions == 5 and reward.totals.judge_failures == 1 and reward.totals.format_errors == 1


def test_adapter_normalises_per_source_and_records():
    reward = WelfareReward(StubJudge(), RewardConfig(), normalization="zscore", record=True)
    got = _call(reward)
    raw = [h["score"] for h in reward.history]
    assert got == normalize(raw, [s for _, s, _ in ROWS], "zscore")
    assert got[4] is None and [h["reward"] for h in reward.history] == got


def test_adapter_stops_when_the_judge_fails_too_often():
    reward = WelfareReward(StubJudge(), RewardConfig(), max_judge_failure_rate=0.1, min_rows_for_rate=5)
    with pytest.raises(RuntimeError, match="judge failures 1/5"):
        _call(reward)


def test_adapter_name_and_completion_forms():
    reward = WelfareReward(StubJudge())
    assert reward.__name__ == "welfare"
    from trl.trainer.utils import get_callable_name

    assert get_callable_name(reward) == "welfare"
    assert completion_text("plain") == "plain"
    assert completion_text([{"role": "assistant", "content": "x"}]) == "x"
    with pytest.raises(ValueError):
        WelfareReward(StubJudge(), normalization="bogus")


def test_batch_metrics_without_scored_rows_keeps_counts_only():
    results = score_batch([RewardInput(completion("FAIL"), "wildguard", "harmful", {})], StubJudge(), RewardConfig())
    m = batch_metrics(results, ["wildguard"])
    assert m["welfare/judge_failures/wildguard"] == 1.0 and "welfare/score/wildguard" not in m


def test_score_heldout_strict_validity_and_welfare():
    rows = [HeldOutRow(f"u{i}", s, [], g, {}) for i, (_, s, g) in enumerate(ROWS)]
    ev = score_heldout(rows, [c for c, _, _ in ROWS], StubJudge(), RewardConfig())
    assert ev.n == 5 and ev.strict_valid == pytest.approx(4 / 5)
    assert ev.judge_failures == 1 and ev.format_errors == 1
    scored = [
        r.score
        for r in score_batch([RewardInput(c, s, g, {}) for c, s, g in ROWS], StubJudge())
        if r.score is not None
    ]
    assert ev.welfare == pytest.approx(sum(scored) / len(scored))
    assert ev.metrics("x_")["x_strict_valid/ambig_qa"] == 0.5


# ---------------------------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------------------------
def _checkpoint(folder: Path, step: int, complete: bool = True) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if complete:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def test_resume_picks_the_last_complete_checkpoint(tmp_path):
    assert last_checkpoint(tmp_path / "missing") is None
    _checkpoint(tmp_path, 2)
    best = _checkpoint(tmp_path, 10)
    _checkpoint(tmp_path, 9)
    _checkpoint(tmp_path, 12, complete=False)  # killed while saving
    (tmp_path / "checkpoint-x").mkdir()
    assert last_checkpoint(tmp_path) == best


def test_prepare_checkpoints_resumes_same_config_and_clears_another(tmp_path):
    folder = tmp_path / "ckpt"
    assert prepare_checkpoints(folder, {"lr": 1}, resume=True) is None  # fresh
    ckpt = _checkpoint(folder, 4)
    assert prepare_checkpoints(folder, {"lr": 1}, resume=True) == ckpt
    assert prepare_checkpoints(folder, {"lr": 2}, resume=True) is None  # another experiment: start over
    assert not ckpt.exists() and (folder / FINGERPRINT_FILE).is_file()
    _checkpoint(folder, 4)
    assert prepare_checkpoints(folder, {"lr": 2}, resume=False) is None
    assert last_checkpoint(folder) is None


# ---------------------------------------------------------------------------------------------------------------
# params, curves, configs, reports
# ---------------------------------------------------------------------------------------------------------------
def test_curve_csv_and_markdown(tmp_path):
    history = [
        {"step": 1, "loss": 2.0},
        {"step": 2, "loss": 1.0, "reward": 0.5},
        {"step": 2, "grad_norm": 3.0},
        {"train_runtime": 9.0},
    ]
    rows = write_curve(history, tmp_path / "c.csv", ["loss", "reward"])
    assert rows == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0, "reward": 0.5}]
    assert (tmp_path / "c.csv").read_text().splitlines() == ["step,loss,reward", "1,2.0,", "2,1.0,0.5"]
    assert "2.0000" in curve_markdown(rows, "loss") and "no reward" not in curve_markdown(rows, "reward")


def test_presets_and_set_overrides_merge_deeply(tmp_path):
    from gtalign.config import apply_set, deep_merge, load_params_with

    assert deep_merge({"a": {"x": 1, "y": 2}}, {"a": {"y": 3}}) == {"a": {"x": 1, "y": 3}}
    assert apply_set({"rl": {"max_steps": 30}}, "rl.args.use_vllm=true") == {
        "rl": {"max_steps": 30, "args": {"use_vllm": True}}
    }
    (tmp_path / "params.yaml").write_text("rl: {max_steps: 30, seed: 0}\nsft: {max_steps: 80}\n")
    (tmp_path / "preset.yaml").write_text("rl: {max_steps: 150}\n")
    p = load_params_with(tmp_path / "params.yaml", [tmp_path / "preset.yaml"], ["sft.max_steps=5"])
    assert p == {"rl": {"max_steps": 150, "seed": 0}, "sft": {"max_steps": 5}}
    with pytest.raises(ValueError):
        apply_set({}, "novalue")


def test_params_sections_validate_and_the_repo_defaults_load():
    import yaml
    from pydantic import ValidationError

    from gtalign.config import parse_params
    from gtalign.train.params import SFTParams

    params = parse_params(yaml.safe_load((REPO_ROOT / "params.yaml").read_text()))
    assert params.sft.args["max_steps"] >= 1
    assert params.base_model.kind == "tiny"
    assert params.rl.with_variant("user").variant == "user"
    with pytest.raises(ValueError, match=r"the RL variant: must be one of cobb_douglas, .*consistency.*got 'ppo'"):
        params.rl.with_variant("ppo")
    with pytest.raises(ValidationError):
        SFTParams(learnig_rate=1.0)  # a typo is an error, not a silent default


def test_trl_config_is_cpu_safe_here(tmp_path):
    from trl import GRPOConfig

    from gtalign.train.params import RLParams
    from gtalign.train.rl import grpo_args

    cfg = RLParams(args={"log_completions": True, "num_generations": 4})
    args = grpo_args(cfg, tmp_path, report_to="none", run_name="t")
    assert isinstance(args, GRPOConfig)
    assert args.bf16 is False and args.use_cpu is True and args.num_generations == 4
    assert args.log_completions is True and args.beta == 0.0


def test_pipes_reports_checks_from_results(tmp_path):
    from gtalign.config import parse_params
    from gtalign.train.pipes_entry import rl_report, sft_report
    from gtalign.train.stages import RLResult, SFTResult

    params = parse_params({"sft": {"min_strict_valid": 0.9}, "rl": {"collapse_ratio": 0.8}})
    good = SFTResult(
        tmp_path, {"heldout_strict_valid": 0.95, "heldout_strict_valid/math-hard": 0.9}, [{"step": 5, "loss": 1.0}]
    )
    meta, checks = sft_report(good, params)
    assert {c["check_name"]: c["passed"] for c in checks} == {"sft_loss_finite": True, "sft_format_validity": True}
    assert "math-hard" in meta["heldout_by_source"]["raw_value"]
    bad = SFTResult(tmp_path, {"heldout_strict_valid": 0.5}, [{"step": 5, "loss": float("nan")}])
    assert not any(c["passed"] for c in sft_report(bad, params)[1])
    rl = RLResult(
        tmp_path,
        "cobb_douglas",
        {"heldout_welfare": 0.3, "init_welfare": 0.5, "reward_judge_failures": 0, "reward_completions": 80},
        [{"step": 1, "loss": 0.1, "reward": 0.4}],
    )
    checks = {c["check_name"]: c["passed"] for c in rl_report(rl, params)[1]}
    assert checks == {"rl_loss_finite": True, "rl_reward_not_collapsed": False, "rl_judge_failure_rate": True}


def test_welfare_components_cover_the_reward():
    assert set(COMPONENTS) >= {"answer_user", "answer_llm", "format", "payoff", "latency"}


def test_named_rl_variants_override_only_their_reward_and_args():
    from gtalign.config import load_typed_params
    from gtalign.train.params import RLParams
    from gtalign.train.stages import RL_NOT_IN_IDENTITY, make_reward

    params = load_typed_params(REPO_ROOT / "params.yaml", presets=[REPO_ROOT / "configs" / "presets" / "paper.yaml"])
    assert params.rl.replicates() == {"cobb_douglas": ["cobb_douglas", "cobb_douglas-seed1", "cobb_douglas-seed2"]}
    gtalign, ablation = params.rl.with_variant("cobb_douglas"), params.rl.with_variant("consistency")
    seed = params.rl.with_variant("cobb_douglas-seed2")
    assert (seed.aggregation, seed.args["seed"], gtalign.args["seed"]) == ("cobb_douglas", 2, 0)
    assert {**seed.args, "seed": 0} == gtalign.args
    plain, consistency = make_reward(params.reward, gtalign).cfg, make_reward(params.reward, ablation).cfg
    assert (plain.llm.matrix, consistency.llm.matrix) == (0.0, 0.2)  # the published reward stays the reference
    assert consistency.model_dump() == {**plain.model_dump(), "llm": {**plain.llm.model_dump(), "matrix": 0.2}}
    assert make_reward(params.reward, params.rl.with_variant("user")).cfg.aggregation == "user"
    # the definitions of other variants are not part of a run's identity (its resumable checkpoints)
    bare = RLParams.model_validate({**params.rl.model_dump(), "variants": {}})
    assert bare.model_dump(exclude=RL_NOT_IN_IDENTITY) == gtalign.model_dump(exclude=RL_NOT_IN_IDENTITY)


@pytest.mark.parametrize(
    ("rl", "pipeline", "error"),
    [
        ({}, {"variants": ["cobb_douglas", "consistncy"]}, r"pipeline\.variants\[1\]: must be one of .*'consistncy'"),
        ({"variants": {"x": {"reward": {"llm": {"matrx": 1}}}}}, {}, r"rl\.variants\.x\.reward: Extra inputs"),
        ({"variants": {"user": {}}}, {}, r"rl\.variants\.user: the name is a built-in aggregation"),
        ({"variants": {"s": {"replicate_of": "cobb"}}}, {}, r"rl\.variants\.s\.replicate_of: unknown variant 'cobb'"),
    ],
)
def test_a_misspelt_variant_fails_before_any_stage(rl, pipeline, error):
    from gtalign.config import ParamsError, parse_params

    with pytest.raises(ParamsError, match=error):
        parse_params({"rl": rl, "pipeline": pipeline})


def _demo_row(content: str, **extra: str) -> dict:
    prompt = [{"role": "user", "content": "What is 2 + 2?"}]
    return {"uid": "u1", "prompt": prompt, "completion": [{"role": "assistant", "content": content}], **extra}


def test_demonstrations_tokenize_as_trl_does_and_loss_from_moves_the_loss_start(tok):
    from trl.trainer.sft_trainer import common_prefix_length

    from gtalign.train.sft import sft_dataset, tokenize_demonstration

    content = (
        "<thinking>Scripted.</thinking><payoff>{}</payoff><analyze>Chosen: DQ_CQ.</analyze><response>4</response>"
    )
    row = _demo_row(content)
    example = tokenize_demonstration(row, tok)
    prompt_ids = tok.apply_chat_template(row["prompt"], tokenize=True, add_generation_prompt=True, return_dict=False)
    full = tok.apply_chat_template(row["prompt"] + row["completion"], tokenize=True, return_dict=False)
    n = common_prefix_length(prompt_ids, full)
    assert example == {"input_ids": full, "completion_mask": [0] * n + [1] * (len(full) - n)}

    later = tokenize_demonstration(_demo_row(content, loss_from="<analyze>"), tok)
    assert later["input_ids"] == full
    trained = tok.decode([t for t, m in zip(full, later["completion_mask"], strict=True) if m])
    assert trained.endswith("<analyze>Chosen: DQ_CQ.</analyze><response>4</response><|im_end|>\n")
    assert trained.index("<analyze>") <= 1  # at most the '>' that BPE merged into the marker's first token
    with pytest.raises(ValueError, match=r"'u1': loss_from '<verdict>' is not in its completion"):
        tokenize_demonstration(_demo_row(content, loss_from="<verdict>"), tok)

    dataset, dropped = sft_dataset([row, _demo_row(content * 40)], tok, max_length=len(full))
    assert (len(dataset), dropped) == (1, 1) and dataset[0]["input_ids"] == full
