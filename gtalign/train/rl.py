"""Welfare-reward RL: TRL `GRPOTrainer` with `gtalign.reward` as the only reward.

The paper trains with PPO and GAE on verl; TRL 1.x has no PPO trainer (not even in `trl.experimental`), so this is
GRPO: per prompt, `num_generations` sampled completions, each rewarded by the welfare reward, advantages relative to
the group. Every run is tagged with that choice (`RL_ALGORITHM_TAG`). The variant (`cobb_douglas` = GTAlign, `user`,
`llm`, `linear`, `ces`) is only `RewardConfig.aggregation`: the baselines differ in one parameter, not in code.

Prompts are the demonstrations' prompts (curated train rows) with their source, ground truth and extra info as
dataset columns, which TRL passes to the reward function.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gtalign.modeling import load_model
from gtalign.train.common import enable_kv_cache, trl_config
from gtalign.train.params import RLParams
from gtalign.train.reward_fn import WelfareReward

RL_ALGORITHM = "grpo"
RL_ALGORITHM_TAG = "grpo (paper: PPO/GAE on verl; TRL 1.x has no PPO)"


def rl_rows(demonstrations: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """GRPO dataset rows: the prompt plus the columns the reward needs (extra_info as JSON: Arrow needs a schema)."""
    return [
        {
            "prompt": d["prompt"],
            "data_source": d["data_source"],
            "ground_truth": d["ground_truth"] or "",
            "extra_info": json.dumps(d.get("extra_info") or {}),
        }
        for d in demonstrations
    ]


def rl_dataset(rows: Sequence[dict[str, Any]], tokenizer: Any, max_prompt_tokens: int | None) -> tuple[Any, int]:
    from datasets import Dataset

    kept = [
        r
        for r in rows
        if max_prompt_tokens is None
        or len(
            tokenizer.apply_chat_template(r["prompt"], tokenize=True, add_generation_prompt=True, return_dict=False)
        )
        <= max_prompt_tokens
    ]
    if not kept:
        raise ValueError(f"no prompt fits rl.max_prompt_tokens={max_prompt_tokens}")
    return Dataset.from_list(kept), len(rows) - len(kept)


def grpo_args(cfg: RLParams, checkpoints: Path, *, report_to: str, run_name: str) -> Any:
    """The `trl.GRPOConfig`: `rl.args` over gtalign's CPU-safe defaults."""
    from trl import GRPOConfig

    fields = {"output_dir": str(checkpoints), "run_name": run_name, "report_to": report_to}
    return trl_config(GRPOConfig, section="rl", fields=fields, passthrough=cfg.args)


@dataclass
class RLOutcome:
    model_dir: Path
    global_step: int
    resumed_from: int | None
    train_prompts: int
    dropped_prompts: int
    train_seconds: float
    completion_tokens: int  # generated tokens this invocation (sum over logged steps of mean length x batch)
    log_history: list[dict[str, Any]]
    reward: WelfareReward
    trainer: Any = None


def _generated_tokens(history: Sequence[dict[str, Any]], completions_per_step: int, since_step: int) -> int:
    return int(
        sum(
            h["completions/mean_length"] * completions_per_step
            for h in history
            if "completions/mean_length" in h and h.get("step", 0) > since_step
        )
    )


def train_rl(
    model_path: str | Path,
    demonstrations: Sequence[dict[str, Any]],
    out_dir: Path,
    checkpoints: Path,
    cfg: RLParams,
    reward: WelfareReward,
    *,
    resume_from: Path | None = None,
    report_to: str = "none",
    run_name: str = "rl",
    callbacks: Sequence[Any] = (),
) -> RLOutcome:
    """GRPO from `model_path` with `reward` (a `WelfareReward`); saves the final model + tokenizer to `out_dir`."""
    from trl import GRPOTrainer

    model, tokenizer = load_model(model_path, dtype=cfg.dtype, lora=cfg.lora)
    dataset, dropped = rl_dataset(rl_rows(demonstrations), tokenizer, cfg.max_prompt_tokens)
    args = grpo_args(cfg, checkpoints, report_to=report_to, run_name=run_name)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )
    start_step = int(Path(resume_from).name.split("-")[-1]) if resume_from else 0
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    seconds = time.perf_counter() - start
    enable_kv_cache(trainer.model)  # TRL turns the KV cache off for training; a saved policy should generate with it
    trainer.save_model(str(out_dir))
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(str(out_dir))
    history = list(trainer.state.log_history)
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps
    return RLOutcome(
        model_dir=Path(out_dir),
        global_step=trainer.state.global_step,
        resumed_from=start_step or None,
        train_prompts=len(dataset),
        dropped_prompts=dropped,
        train_seconds=seconds,
        completion_tokens=_generated_tokens(history, per_step, start_step),
        log_history=history,
        reward=reward,
        trainer=trainer,
    )


__all__ = ["RL_ALGORITHM", "RL_ALGORITHM_TAG", "RLOutcome", "grpo_args", "train_rl"]
