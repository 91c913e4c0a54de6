"""SFT warm start: TRL `SFTTrainer` on the four-block demonstrations, loss on the completion only.

The demonstrations are prompt-completion conversational rows (`prompt`: chat messages, `completion`: one assistant
message), so TRL's default `completion_only_loss` puts the loss on the assistant turn and its `<|im_end|>` with any
chat template -- the tiny model's and Qwen's alike. Rows longer than `sft.args.max_length` are dropped rather than
truncated: a truncated completion loses its closing `</response>` and would teach the model not to finish.

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

from gtalign.modeling import load_model
from gtalign.train.common import enable_kv_cache, last_checkpoint, trl_config
from gtalign.train.params import SFTParams


def load_demonstrations(path: Path) -> list[dict[str, Any]]:
    """Rows of `gtalign data demonstrations` (uid, data_source, prompt, completion, ground_truth, extra_info)."""
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def sft_dataset(rows: Sequence[dict[str, Any]], tokenizer: Any, max_length: int | None) -> tuple[Any, int]:
    """(prompt/completion Dataset, number of rows dropped for exceeding max_length tokens; None keeps all)."""
    from datasets import Dataset

    kept = []
    for row in rows:
        ids = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True, return_dict=False)
        if max_length is None or len(ids) <= max_length:
            kept.append({"prompt": row["prompt"], "completion": row["completion"]})
    if not kept:
        raise ValueError(f"no demonstration fits sft.args.max_length={max_length} tokens")
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


def sft_args(cfg: SFTParams, checkpoints: Path, *, report_to: str, run_name: str) -> Any:
    """The `trl.SFTConfig`: `sft.args` over gtalign's CPU-safe defaults, with the loss on the completion only and
    the trained-token count (throughput) without padding."""
    from trl import SFTConfig

    return trl_config(
        SFTConfig,
        section="sft",
        fields={
            "output_dir": str(checkpoints),
            "run_name": run_name,
            "report_to": report_to,
            "completion_only_loss": True,
            "include_num_input_tokens_seen": "non_padding",
        },
        passthrough=cfg.args,
    )


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
    from trl import SFTTrainer

    model, tokenizer = load_model(model_path, dtype=cfg.dtype, lora=cfg.lora)
    args = sft_args(cfg, checkpoints, report_to=report_to, run_name=run_name)
    dataset, dropped = sft_dataset(load_demonstrations(demonstrations), tokenizer, args.max_length)
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


__all__ = ["SFTOutcome", "last_checkpoint", "load_demonstrations", "sft_args", "sft_dataset", "train_sft"]
