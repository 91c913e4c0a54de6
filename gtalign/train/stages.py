"""Training stages as library functions: `base_model_stage`, `sft_stage`, `rl_stage`.

The CLI (`gtalign train ...`), `dvc repro` and the Dagster assets (through `gtalign.train.pipes_entry`) call these
and nothing else, with params.yaml as the only source of hyperparameters; paths are `gtalign.layout`'s:

* outputs: `artifacts/models/{base,sft,rl-<variant>}` (a standard Hugging Face folder, plus
  `heldout_eval.json` / `heldout_generations.jsonl` for the trained ones);
* checkpoints: `artifacts/checkpoints/<name>` (kept out of the DVC outputs so a killed run can resume);
* metrics: `artifacts/metrics/<name>.json` (`dvc metrics show`), curves `artifacts/plots/<name>_{loss,reward}.csv`
  (`dvc plots show`);
* one MLflow run per training (`gtalign.tracking.run`: flattened params, DVC data version, git commit) into which
  TRL reports its metrics, with the config, curve and final model as artifacts.

Under `accelerate launch` every process runs the stage; only rank 0 tracks, writes metrics and evaluates (the
evaluation loads the saved model, so it also works after sharded training).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gtalign import tracking
from gtalign.config import Params
from gtalign.layout import HELDOUT_GENERATIONS_FILE, Layout, rl_model_name, write_metrics
from gtalign.modeling import (
    TinyModelConfig,
    base_corpus,
    build_base_model,
    count_parameters,
    load_model,
    model_identity,
    resolve_model_path,
    write_pretrained_pointer,
)
from gtalign.reward.config import RewardParams
from gtalign.reward.judges import make_judge
from gtalign.train.common import (
    PolicyEval,
    curve_markdown,
    evaluate_folder,
    evaluate_policy,
    held_out_rows,
    is_main_process,
    parallel_metrics,
    prepare_checkpoints,
    save_eval,
    training_run,
    world_size,
    write_curve,
)
from gtalign.train.params import EvalParams, RLParams
from gtalign.train.reward_fn import WelfareReward
from gtalign.train.rl import RL_ALGORITHM_TAG, train_rl
from gtalign.train.sft import load_demonstrations, train_sft

# Settings that do not change what a training produces: changing one keeps (and resumes) its checkpoints.
SFT_NOT_IN_IDENTITY = {
    "resume": True,
    "eval": True,
    "min_strict_valid": True,
    "launcher": True,  # how the run is started, not what it trains
    "args": {"logging_steps"},
}
RL_NOT_IN_IDENTITY = {
    "resume": True,
    "eval": True,
    "collapse_ratio": True,
    "variants": True,  # the run's own variant is already in its args and reward
    "launcher": True,  # how the run is started, not what it trains
    "args": {"logging_steps"},
}
SFT_CURVE_KEYS = ("loss", "learning_rate", "grad_norm", "mean_token_accuracy")
RL_CURVE_KEYS = (
    "reward",
    "reward_std",
    "welfare/U/all",
    "welfare/L/all",
    "welfare/format_error_rate/all",
    "completions/mean_length",
    "loss",
    "entropy",
)


def _file_md5(path: Path) -> str:
    import hashlib

    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def _log_mlflow(metrics: Mapping[str, Any], artifacts: Sequence[tuple[Path, str | None]], config: Mapping) -> None:
    import mlflow

    mlflow.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)})
    mlflow.log_dict(dict(config), "config.json")
    for path, where in artifacts:
        if path.is_dir():
            mlflow.log_artifacts(str(path), where)
        elif path.is_file():
            mlflow.log_artifact(str(path), where)


# ---------------------------------------------------------------------------------------------------------------
# base model
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class BaseModelResult:
    path: Path
    kind: str
    metrics: dict[str, float]
    run_id: str | None = None


def base_model_stage(
    root: Path, params: Params, *, tracking_uri: str | None = None, track: bool = True
) -> BaseModelResult:
    """Build the tiny model (tokenizer trained on the curated corpus + demonstrations) or point at a pretrained one."""
    layout = Layout(root)
    cfg = params.base_model
    out = layout.model("base")
    start = time.perf_counter()
    if cfg.kind == "pretrained":
        if not cfg.pretrained:
            raise ValueError("base_model.kind=pretrained needs base_model.pretrained (a folder or hub name)")
        if out.exists():
            import shutil

            shutil.rmtree(out)
        write_pretrained_pointer(out, cfg.pretrained)
        metrics: dict[str, float] = {"seconds": time.perf_counter() - start}
    else:
        corpus = base_corpus(layout.curated / "curated.parquet", layout.demonstrations_file, cfg.corpus_splits)
        if not corpus:
            raise FileNotFoundError("no corpus: run `gtalign data curate` and `gtalign data demonstrations` first")
        tiny = TinyModelConfig(**cfg.model_dump(include=set(TinyModelConfig.model_fields)))
        build_base_model(out, corpus, tiny)
        metrics = _tiny_metrics(out, len(corpus), time.perf_counter() - start)
    write_metrics(layout.metrics("base"), metrics)
    run_id = None
    if track:
        with tracking.run(root, "base_model", params={"base_model": cfg.model_dump()}, tracking_uri=tracking_uri) as r:
            _log_mlflow(metrics, [(out, "model")], {"base_model": cfg.model_dump()})
            run_id = r.info.run_id
    return BaseModelResult(out, cfg.kind, metrics, run_id)


def _tiny_metrics(out: Path, corpus_texts: int, seconds: float) -> dict[str, float]:
    model, tokenizer = load_model(out, dtype="float32")
    return {
        "parameters": float(count_parameters(model)),
        "vocab_size": float(len(tokenizer)),
        "corpus_texts": float(corpus_texts),
        "seconds": seconds,
    }


def _resolve_init(layout: Layout, init: str) -> str:
    named = {"base": layout.model("base"), "sft": layout.model("sft")}
    path = named.get(init, init)
    if init in named and not Path(path).exists():
        raise FileNotFoundError(f"{path}: no {init} model yet (run `gtalign train {init}` first)")
    return resolve_model_path(path)


def _eval_setup(reward: RewardParams, cfg: EvalParams) -> tuple[Any, Any, dict[str, Any]]:
    """The judge and reward config held-out evaluations use: params.yaml `reward:` (so every model, whatever
    variant trained it, is measured by the same welfare) and the eval judge."""
    judge = make_judge(cfg.judge, **reward.judge.of(cfg.judge))
    rcfg = reward.config()
    return judge, rcfg, {"reward": rcfg.model_dump(), "judge": cfg.judge}


def _heldout_eval(
    root: Path, params: Params, cfg: EvalParams, init: str, trainer: Any, out: Path, cache_dir: Path
) -> tuple[dict[str, float], PolicyEval, PolicyEval | None]:
    """Held-out welfare of the trained policy and of the model it started from (cached: the same for every run).

    A single process evaluates the in-memory model; rank 0 after a multi-process run loads the saved folder,
    since the in-memory model may be sharded."""
    rows = held_out_rows(root, params.curate.prompt_style, cfg)
    judge, rcfg, key = _eval_setup(params.reward, cfg)
    init_eval = (
        evaluate_folder(Path(init), rows, cfg, judge, rcfg, cache_key=key, cache_dir=cache_dir)
        if Path(init).is_dir()
        else None
    )
    t0 = time.perf_counter()
    if world_size() == 1:
        model, tokenizer = trainer.model, trainer.processing_class
    else:
        model, tokenizer = load_model(out, dtype="float32")
    result = evaluate_policy(model, tokenizer, rows, cfg, judge, rcfg)
    save_eval(out, result, cache_key=key, rows=rows, cfg=cfg)
    metrics = {"eval_seconds": time.perf_counter() - t0, **result.metrics("heldout_")}
    if init_eval is not None:
        metrics |= {k: v for k, v in init_eval.metrics("init_").items() if "/" not in k}
        metrics["welfare_gain"] = result.welfare - init_eval.welfare
    return metrics, result, init_eval


def _finish(
    layout: Layout, name: str, curve_kind: str, metrics: Mapping[str, float], run: Any, logged: Mapping
) -> None:
    """metrics JSON for `dvc metrics`; into the MLflow run: metrics, config, curve, final model, generations."""
    write_metrics(layout.metrics(name), metrics)
    if run is not None:
        out = layout.model(name)
        _log_mlflow(
            metrics,
            [(out, "model"), (layout.plot(name, curve_kind), None), (out / HELDOUT_GENERATIONS_FILE, None)],
            logged,
        )


# ---------------------------------------------------------------------------------------------------------------
# SFT
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class SFTResult:
    path: Path
    metrics: dict[str, float]
    curve: list[dict[str, float]] = field(default_factory=list)
    eval: PolicyEval | None = None
    eval_init: PolicyEval | None = None
    run_id: str | None = None
    global_step: int = 0
    resumed_from: int | None = None

    def curve_markdown(self) -> str:
        return curve_markdown(self.curve, "loss")


def sft_stage(
    root: Path,
    params: Params,
    *,
    tracking_uri: str | None = None,
    track: bool = True,
    evaluate: bool = True,
    callbacks: Sequence[Any] = (),
) -> SFTResult:
    """SFT on the demonstrations from the base model; evaluates strict validity and welfare before and after."""
    layout = Layout(root)
    cfg = params.sft
    init = _resolve_init(layout, cfg.init)
    out, ckpts = layout.model("sft"), layout.checkpoints("sft")
    if not layout.demonstrations_file.is_file():
        raise FileNotFoundError(f"{layout.demonstrations_file}: run `gtalign data demonstrations` first")
    identity = {
        "sft": cfg.model_dump(exclude=SFT_NOT_IN_IDENTITY),
        "init": [init, model_identity(init)],
        "data": _file_md5(layout.demonstrations_file),
    }
    resume = prepare_checkpoints(ckpts, identity, resume=cfg.resume)
    tags = {
        "gtalign.trainer": "trl.SFTTrainer",
        "gtalign.init_model": init,
        "gtalign.demonstrations_md5": identity["data"],
        "gtalign.resumed_from": resume.name if resume else "none",
        "gtalign.world_size": str(world_size()),
    }
    logged = {"sft": cfg.model_dump(), "init_model": init}
    with training_run(
        root,
        "sft",
        logged,
        tags,
        checkpoints=ckpts,
        resuming=resume is not None,
        tracking_uri=tracking_uri,
        enabled=track,
    ) as run:
        outcome = train_sft(
            init,
            layout.demonstrations_file,
            out,
            ckpts,
            cfg,
            resume_from=resume,
            report_to="mlflow" if run is not None else "none",
            callbacks=callbacks,
        )
        if not is_main_process():
            return SFTResult(out, {}, global_step=outcome.global_step, resumed_from=outcome.resumed_from)
        curve = write_curve(outcome.log_history, layout.plot("sft", "loss"), SFT_CURVE_KEYS)
        losses = [r["loss"] for r in curve if "loss" in r]
        metrics: dict[str, float] = {
            "global_step": float(outcome.global_step),
            "train_rows": float(outcome.train_rows),
            "dropped_rows": float(outcome.dropped_rows),
            "train_seconds": outcome.train_seconds,
            "train_tokens_per_second": outcome.train_tokens / outcome.train_seconds if outcome.train_seconds else 0.0,
            **parallel_metrics(outcome.trainer.args),
            "loss_first": losses[0] if losses else math.nan,
            "loss_final": losses[-1] if losses else math.nan,
            "loss_finite": float(all(math.isfinite(v) for v in losses)),
        }
        result_eval = init_eval = None
        if evaluate:
            evaluated, result_eval, init_eval = _heldout_eval(
                root, params, cfg.eval, init, outcome.trainer, out, layout.eval_cache
            )
            metrics |= evaluated
        outcome.trainer = None
        _finish(layout, "sft", "loss", metrics, run, logged)
        return SFTResult(
            out,
            metrics,
            curve,
            result_eval,
            init_eval,
            run.info.run_id if run is not None else None,
            outcome.global_step,
            outcome.resumed_from,
        )


# ---------------------------------------------------------------------------------------------------------------
# RL
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class RLResult:
    path: Path
    variant: str
    metrics: dict[str, float]
    curve: list[dict[str, float]] = field(default_factory=list)
    eval: PolicyEval | None = None
    eval_init: PolicyEval | None = None
    run_id: str | None = None
    global_step: int = 0
    resumed_from: int | None = None
    reward: Any = None  # the WelfareReward adapter (its totals, and its history when recorded)

    def curve_markdown(self) -> str:
        return curve_markdown(self.curve, "reward")


def make_reward(reward: RewardParams, cfg: RLParams, *, record: bool = False) -> WelfareReward:
    """The RL reward adapter for `cfg`: params.yaml `reward:` with the variant's aggregation (and, for a named
    variant, its reward overrides)."""
    options = {**reward.judge.of(cfg.judge), **cfg.judge_options}
    return WelfareReward(
        judge=make_judge(cfg.judge, **options),
        cfg=reward.config(**cfg.reward_overrides()),
        normalization=cfg.normalization,
        record=record,
        max_judge_failure_rate=cfg.max_judge_failure_rate,
    )


def rl_stage(
    root: Path,
    params: Params,
    variant: str | None = None,
    *,
    tracking_uri: str | None = None,
    track: bool = True,
    evaluate: bool = True,
    callbacks: Sequence[Any] = (),
    record_rewards: bool = False,
) -> RLResult:
    """GRPO with the welfare reward of `variant` (default params.yaml `rl.variant`) from the SFT (or base) model."""
    layout = Layout(root)
    cfg = params.rl.with_variant(variant)
    name = rl_model_name(cfg.variant)
    init = _resolve_init(layout, cfg.init)
    out, ckpts = layout.model(name), layout.checkpoints(name)
    if not layout.demonstrations_file.is_file():
        raise FileNotFoundError(f"{layout.demonstrations_file}: run `gtalign data demonstrations` first")
    reward = make_reward(params.reward, cfg, record=record_rewards)
    identity = {
        "rl": cfg.model_dump(exclude=RL_NOT_IN_IDENTITY),
        "reward": reward.cfg.model_dump(),
        "init": [init, model_identity(init)],
        "data": _file_md5(layout.demonstrations_file),
    }
    resume = prepare_checkpoints(ckpts, identity, resume=cfg.resume)
    tags = {
        "gtalign.rl_algorithm": RL_ALGORITHM_TAG,
        "gtalign.trainer": "trl.GRPOTrainer",
        "gtalign.variant": cfg.variant,
        "gtalign.judge": cfg.judge,
        "gtalign.normalization": cfg.normalization,
        "gtalign.init_model": init,
        "gtalign.resumed_from": resume.name if resume else "none",
        "gtalign.world_size": str(world_size()),
    }
    logged = {"rl": cfg.model_dump(exclude={"variants"}), "reward": reward.cfg.model_dump(), "init_model": init}
    with training_run(
        root,
        name,
        logged,
        tags,
        checkpoints=ckpts,
        resuming=resume is not None,
        tracking_uri=tracking_uri,
        enabled=track,
    ) as run:
        outcome = train_rl(
            init,
            load_demonstrations(layout.demonstrations_file),
            out,
            ckpts,
            cfg,
            reward,
            resume_from=resume,
            report_to="mlflow" if run is not None else "none",
            run_name=name,
            callbacks=callbacks,
        )
        if not is_main_process():
            return RLResult(out, cfg.variant, {}, global_step=outcome.global_step, reward=reward)
        curve = write_curve(outcome.log_history, layout.plot(name, "reward"), RL_CURVE_KEYS)
        rewards = [r["reward"] for r in curve if "reward" in r]
        head = rewards[: max(1, len(rewards) // 4)]
        tail = rewards[-max(1, len(rewards) // 4) :]
        totals = reward.totals
        metrics: dict[str, float] = {
            "global_step": float(outcome.global_step),
            "train_prompts": float(outcome.train_prompts),
            "dropped_prompts": float(outcome.dropped_prompts),
            "train_seconds": outcome.train_seconds,
            "step_seconds": outcome.train_seconds / max(1, outcome.global_step - (outcome.resumed_from or 0)),
            "generated_tokens_per_second": outcome.completion_tokens / outcome.train_seconds
            if outcome.train_seconds
            else 0.0,
            **parallel_metrics(outcome.trainer.args),
            "train_reward_first_quarter": statistics.fmean(head) if rewards else math.nan,
            "train_reward_last_quarter": statistics.fmean(tail) if rewards else math.nan,
            "reward_judge_failures": float(totals.judge_failures),
            "reward_format_errors": float(totals.format_errors),
            "reward_completions": float(totals.completions),
        }
        result_eval = init_eval = None
        if evaluate:
            evaluated, result_eval, init_eval = _heldout_eval(
                root, params, cfg.eval, init, outcome.trainer, out, layout.eval_cache
            )
            metrics |= evaluated
        outcome.trainer = None
        _finish(layout, name, "reward", metrics, run, logged)
        return RLResult(
            out,
            cfg.variant,
            metrics,
            curve,
            result_eval,
            init_eval,
            run.info.run_id if run is not None else None,
            outcome.global_step,
            outcome.resumed_from,
            reward,
        )


__all__ = [
    "BaseModelResult",
    "RLResult",
    "SFTResult",
    "base_model_stage",
    "make_reward",
    "rl_stage",
    "sft_stage",
]
