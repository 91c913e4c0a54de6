"""SFT warm start: TRL `SFTTrainer` on the four-block demonstrations, loss on the completion only.

The demonstrations are prompt-completion conversational rows (`prompt`: chat messages, `completion`: one assistant
message), so TRL's default `completion_only_loss` puts the loss on the assistant turn and its `<|im_end|>` with any
chat template -- the tiny model's and Qwen's alike. Rows longer than `max_length` are dropped rather than truncated:
a truncated completion loses its closing `</response>` and would teach the model not to finish.

This module trains; it does not track. The stage (`gtalign.train.stages.sft_stage`) opens the MLflow run and TRL's
`report_to="mlflow"` logs into it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from gtalign.modeling import load_model
from gtalign.train.common import EvalParams, StrictModel, enable_kv_cache, last_checkpoint, trl_config


class SFTParams(StrictModel):
    """params.yaml `sft:`. Defaults are the tiny CPU preset (tuned: see docs/scale_out.md for a 3B model)."""

    init: str = Field("base", description="'base' (artifacts/models/base) or a model folder / hub name")
    max_steps: int = Field(80, ge=-1, description="-1: train num_train_epochs instead (the real-model presets)")
    num_train_epochs: float = Field(1.0, gt=0)
    per_device_train_batch_size: int = Field(16, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    learning_rate: float = Field(2e-3, gt=0)
    lr_scheduler_type: str = "cosine"
    warmup_steps: int = Field(20, ge=0)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int = Field(1024, ge=16)
    train_sampling_strategy: str = Field(
        "group_by_length", description="group_by_length: batches of similar length, far less padding on CPU"
    )
    logging_steps: int = Field(5, ge=1)
    save_steps: int = Field(20, ge=1)
    save_total_limit: int | None = 2
    seed: int = 0
    dtype: str = Field("float32", description="weights dtype when loading: float32 on CPU, auto/bfloat16 on GPU")
    lora: dict[str, Any] | None = Field(
        None, description="peft LoraConfig kwargs, e.g. {r: 16, target_modules: all-linear}"
    )
    resume: bool = Field(True, description="resume from the last complete checkpoint of the same configuration")
    min_strict_valid: float = Field(0.9, ge=0, le=1, description="the Dagster check's threshold on held-out prompts")
    eval: EvalParams = Field(default_factory=EvalParams)
    args: dict[str, Any] = Field(default_factory=dict, description="passed to trl.SFTConfig as is (deepspeed, ...)")


def load_demonstrations(path: Path) -> list[dict[str, Any]]:
    """Rows of `gtalign data demonstrations` (uid, data_source, prompt, completion, ground_truth, extra_info)."""
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def sft_dataset(rows: Sequence[dict[str, Any]], tokenizer: Any, max_length: int) -> tuple[Any, int]:
    """(prompt/completion Dataset, number of rows dropped for exceeding max_length tokens)."""
    from datasets import Dataset

    kept = []
    for row in rows:
        ids = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True, return_dict=False)
        if len(ids) <= max_length:
            kept.append({"prompt": row["prompt"], "completion": row["completion"]})
    if not kept:
        raise ValueError(f"no demonstration fits sft.max_length={max_length} tokens")
    return Dataset.from_list(kept), len(rows) - len(kept)


@dataclass
class SFTOutcome:
    model_dir: Path
    global_step: int
    resumed_from: int | None
    train_rows: int
    dropped_rows: int
    train_seconds: float
    train_tokens: int  # tokens the trainer saw (prompt + completion, padding excluded), this invocation
    log_history: list[dict[str, Any]]
    trainer: Any = None  # kept for callers that evaluate in-process (None once released)


def train_sft(
    model_path: str | Path,
    demonstrations: Path,
    out_dir: Path,
    checkpoints: Path,
    cfg: SFTParams,
    *,
    resume_from: Path | None = None,
    report_to: str = "none",
    run_name: str = "sft",
    callbacks: Sequence[Any] = (),
) -> SFTOutcome:
    """Train from `model_path` and save the final model + tokenizer to `out_dir` (checkpoints under `checkpoints`)."""
    from trl import SFTConfig, SFTTrainer

    model, tokenizer = load_model(model_path, dtype=cfg.dtype, lora=cfg.lora)
    dataset, dropped = sft_dataset(load_demonstrations(demonstrations), tokenizer, cfg.max_length)
    args = trl_config(
        SFTConfig,
        fields={
            "output_dir": str(checkpoints),
            "run_name": run_name,
            "report_to": report_to,
            "max_steps": cfg.max_steps,
            "num_train_epochs": cfg.num_train_epochs,
            "per_device_train_batch_size": cfg.per_device_train_batch_size,
            "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
            "learning_rate": cfg.learning_rate,
            "lr_scheduler_type": cfg.lr_scheduler_type,
            "warmup_steps": cfg.warmup_steps,
            "weight_decay": cfg.weight_decay,
            "max_grad_norm": cfg.max_grad_norm,
            "max_length": cfg.max_length,
            "train_sampling_strategy": cfg.train_sampling_strategy,
            "logging_steps": cfg.logging_steps,
            "save_steps": cfg.save_steps,
            "save_total_limit": cfg.save_total_limit,
            "seed": cfg.seed,
            "data_seed": cfg.seed,
            "completion_only_loss": True,
            "include_num_input_tokens_seen": "non_padding",
        },
        passthrough=cfg.args,
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=list(callbacks)
    )
    resume = resume_from or None
    tokens_before = 0
    if resume is not None:
        state = json.loads((Path(resume) / "trainer_state.json").read_text())
        tokens_before = int(state.get("num_input_tokens_seen") or 0)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - start
    enable_kv_cache(trainer.model)  # TRL turns the KV cache off for training; a saved policy should generate with it
    trainer.save_model(str(out_dir))
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(str(out_dir))
    return SFTOutcome(
        model_dir=Path(out_dir),
        global_step=trainer.state.global_step,
        resumed_from=int(Path(resume).name.split("-")[-1]) if resume else None,
        train_rows=len(dataset),
        dropped_rows=dropped,
        train_seconds=seconds,
        train_tokens=int(trainer.state.num_input_tokens_seen or 0) - tokens_before,
        log_history=list(trainer.state.log_history),
        trainer=trainer,
    )


__all__ = ["SFTOutcome", "SFTParams", "last_checkpoint", "load_demonstrations", "sft_dataset", "train_sft"]
