"""params.yaml parsed once into `gtalign.config.Params`: strict sections, clear errors, TRL configs passed through."""

import json
import math
from pathlib import Path

import pytest

from gtalign.config import Params, ParamsError, load_typed_params, parse_params
from gtalign.layout import Layout, rl_model_name, write_metrics

REPO = Path(__file__).parents[1]
PRESETS = [
    [],
    ["configs/presets/paper.yaml"],
    ["configs/train/qwen2.5-3b.yaml"],
    ["configs/train/qwen2.5-3b.yaml", "configs/train/qwen2.5-3b-vllm-server.yaml"],
]

# One misspelt key per strictly typed section (and the nested ones), and the error naming it.
MISSPELT = {
    "curate": ({"curate": {"prompt_styl": "full"}}, "curate.prompt_styl"),
    "demonstrations": ({"demonstrations": {"teachr": "rule"}}, "demonstrations.teachr"),
    "demonstrations.openai": (
        {"demonstrations": {"openai": {"base_url": "http://x/v1", "model": "m", "tempreature": 1.0}}},
        "demonstrations.openai.tempreature",
    ),
    "teacher_eval": ({"teacher_eval": {"per_sorce": 3}}, "teacher_eval.per_sorce"),
    "reward": ({"reward": {"aggregaton": "linear"}}, "reward.aggregaton"),
    "reward.user": ({"reward": {"user": {"answr": 0.5}}}, "reward.user.answr"),
    "reward.judge": ({"reward": {"judge": {"opnai": {}}}}, "reward.judge.opnai"),
    "evaluate": ({"evaluate": {"per_sorce": 3}}, "evaluate.per_sorce"),
    "base_model": ({"base_model": {"hiden_size": 64}}, "base_model.hiden_size"),
    "sft": ({"sft": {"max_steps": 5}}, "sft.max_steps"),  # a TRL field belongs under sft.args
    "sft.eval": ({"sft": {"eval": {"split": ["dev"]}}}, "sft.eval.split"),
    "rl": ({"rl": {"learning_rate": 1e-5}}, "rl.learning_rate"),  # a TRL field belongs under rl.args
    "rl.eval": ({"rl": {"eval": {"judg": "rule"}}}, "rl.eval.judg"),
    "pipeline": ({"pipeline": {"variant": ["user"]}}, "pipeline.variant"),
    "top level": ({"rll": {}}, "rll"),
}


@pytest.mark.parametrize("presets", PRESETS, ids=lambda p: "+".join(Path(x).stem for x in p) or "params.yaml")
def test_the_repo_params_and_every_preset_parse(presets):
    params = load_typed_params(REPO / "params.yaml", [REPO / p for p in presets])
    assert isinstance(params, Params) and params.rl.args["max_steps"] >= 1 and params.sft.args["max_steps"] != 0


def test_the_demo_serves_with_the_steering_its_report_measures():
    """The registered champion carries `steering:` to every server; the report's steering section measures it at
    `steering.eval.prices` in both analyze modes. They must be the same price, and the solver must be one of the
    measured modes, or the served behaviour is not the reported one."""
    demo = load_typed_params(REPO / "params.yaml")
    assert [demo.steering.price_per_100_words] == demo.steering.eval.prices
    assert demo.steering.analyze in demo.steering.eval.analyze_modes


@pytest.mark.parametrize("case", list(MISSPELT), ids=str)
def test_a_misspelt_key_is_an_error_naming_section_and_key(case):
    raw, where = MISSPELT[case]
    with pytest.raises(ParamsError, match=rf"params\.yaml: {where.replace('.', chr(92) + '.')}: Extra inputs"):
        parse_params(raw)


def test_bad_values_and_empty_sections():
    with pytest.raises(ParamsError, match=r"rl\.variant: .*must be one of"):
        parse_params({"rl": {"variant": "ppo"}})
    with pytest.raises(ParamsError, match=r"demonstrations\.teacher: Input should be 'rule' or 'openai'"):
        parse_params({"demonstrations": {"teacher": "oracle"}})
    assert parse_params({"sft": None, "reward": None}).sft.args == {}  # an empty YAML section is the defaults


def test_written_sections_are_what_the_file_says():
    """MLflow logs a section as written (no defaults added, no 500 -> 500.0)."""
    raw = {"reward": {"latency_scale": 500, "judge": {"rule": {}}}, "teacher_eval": {"seed": 1}}
    params = parse_params(raw)
    assert params.written("reward") == raw["reward"] and params.written("evaluate") == {}
    assert params.written("teacher_eval") == {"seed": 1} and params.reward.latency_scale == 500.0
    assert params.reward.config(aggregation="user").aggregation == "user"
    assert params.reward.judge.of("openai") == {} and params.reward.judge.of("rule") == {}


# What gtalign sets on CPU whatever params.yaml says (gtalign.train.common.trl_config).
CPU_DEFAULTS = {
    "bf16": False,
    "use_cpu": True,
    "activation_checkpointing": False,
    "save_strategy": "steps",
    "logging_first_step": True,
    "dataloader_num_workers": 0,
    "disable_tqdm": False,
}


def _trl_kwargs(cls_name: str, build, monkeypatch) -> dict:
    import trl

    import gtalign.train.common as common

    captured: dict = {}

    class Capture:
        def __init__(self, **kwargs):
            captured.update(kwargs)

    Capture.__name__ = cls_name
    monkeypatch.setattr(trl, cls_name, Capture)
    monkeypatch.setattr(common, "cuda_available", lambda: False)
    build()
    return captured


def test_params_yaml_reaches_trl_with_the_values_it_had_before_args(monkeypatch, tmp_path):
    """The TRL fields moved under `rl.args` / `sft.args`; the config TRL receives is the one it received before
    (values of the params.yaml layout of commit b8681bb, where they were top-level keys of `rl:` and `sft:`)."""
    from gtalign.train.rl import grpo_args
    from gtalign.train.sft import sft_args

    params = load_typed_params(REPO / "params.yaml")
    grpo = _trl_kwargs(
        "GRPOConfig", lambda: grpo_args(params.rl, tmp_path, report_to="none", run_name="rl"), monkeypatch
    )
    assert grpo == {
        "output_dir": str(tmp_path),
        "run_name": "rl",
        "report_to": "none",
        **CPU_DEFAULTS,
        "max_steps": 60,
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 1,
        "num_generations": 4,
        "max_completion_length": 256,
        "temperature": 0.7,
        "top_p": 1.0,
        "learning_rate": 2.0e-5,
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "beta": 0.0,
        "loss_type": "dapo",
        "scale_rewards": "group",
        "num_iterations": 2,
        "logging_steps": 1,
        "save_steps": 20,
        "save_total_limit": 2,
        "seed": 0,
        "data_seed": 0,
    }
    sft = _trl_kwargs(
        "SFTConfig", lambda: sft_args(params.sft, tmp_path, report_to="none", run_name="sft"), monkeypatch
    )
    assert sft == {
        "output_dir": str(tmp_path),
        "run_name": "sft",
        "report_to": "none",
        **CPU_DEFAULTS,
        "max_steps": 320,  # 160 until the demo trained the steered recipe
        "num_train_epochs": 1.0,
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 1,
        "learning_rate": 3.0e-3,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 10,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "max_length": 1024,
        "train_sampling_strategy": "random",
        "logging_steps": 5,
        "save_steps": 40,
        "save_total_limit": 2,
        "seed": 0,
        "data_seed": 0,
        "completion_only_loss": True,
        "include_num_input_tokens_seen": "non_padding",
    }
    assert type(sft["num_train_epochs"]) is float


def test_the_real_grpo_config_and_an_unknown_trl_name(tmp_path, monkeypatch):
    import gtalign.train.common as common
    from gtalign.train.rl import grpo_args

    monkeypatch.setattr(common, "cuda_available", lambda: False)
    params = load_typed_params(REPO / "params.yaml")
    config = grpo_args(params.rl, tmp_path, report_to="none", run_name="rl").to_dict()
    assert {k: config[k] for k in ("max_steps", "learning_rate", "num_generations", "beta", "seed", "data_seed")} == {
        "max_steps": 60,
        "learning_rate": 2.0e-5,
        "num_generations": 4,
        "beta": 0.0,
        "seed": 0,
        "data_seed": 0,
    }
    bad = params.rl.model_copy(update={"args": {**params.rl.args, "max_stepz": 5}})
    with pytest.raises(ParamsError, match=r"params\.yaml: rl\.args: GRPOConfig rejects it: .*max_stepz"):
        grpo_args(bad, tmp_path, report_to="none", run_name="rl")


def test_layout_names_and_metrics_files(tmp_path):
    layout = Layout(tmp_path)
    assert rl_model_name("cobb_douglas") == "rl-cobb_douglas"
    assert layout.model(rl_model_name("user")) == tmp_path / "artifacts" / "models" / "rl-user"
    assert layout.demonstrations_file == tmp_path / "artifacts" / "demonstrations" / "demonstrations.jsonl"
    write_metrics(layout.metrics("x"), {"b": 1.0, "a": math.nan, "c": 2})
    assert json.loads(layout.metrics("x").read_text()) == {"b": 1.0, "c": 2}  # valid JSON: no NaN
