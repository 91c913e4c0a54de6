"""SFT warm start: TRL `SFTTrainer` on the four-block demonstrations, loss on the completion only.

The demonstrations are prompt-completion conversational rows (`prompt`: chat messages, `completion`: one assistant
message). They are tokenized here exactly as TRL tokenizes them (the chat template over prompt + completion; the
loss on the assistant turn and its `<|im_end|>`, with any chat template -- the tiny model's and Qwen's alike) and
handed to `SFTTrainer` as `input_ids` + `completion_mask`, so that a row can also start its loss later
(`loss_from`, the game recipe's counterfactuals with `demonstrations.counterfactual_loss: analyze`). Rows longer than
`sft.args.max_length` are dropped rather than truncated: a truncated completion loses its closing `</response>` and
would teach the model not to finish.

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


def tokenize_demonstration(row: dict[str, Any], tokenizer: Any) -> dict[str, list[int]]:
    """`input_ids` and `completion_mask` of one prompt-completion row, tokenized as TRL tokenizes it (the chat
    template over prompt + completion, the loss from where the prompt alone ends), except that a row naming a
    `loss_from` marker takes the loss only from the marker's first occurrence in its completion.

    Why the marker: a counterfactual demonstration of the `game` recipe shows a matrix that steering edited *after*
    the model's thinking. Training the model to write that matrix teaches it blends of base and edited matrices;
    with `loss_from: "<analyze>"` the edited matrix is context, as steering supplies it at inference, and the loss
    teaches only what must follow from it: the analyze and a response doing its cell's action."""
    prompt_text = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    text = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
    if not text.startswith(prompt_text):
        raise ValueError(f"demonstration {row.get('uid')!r}: the chat template renders its prompt differently alone")
    start = len(prompt_text)
    marker = row.get("loss_from")
    if marker:
        at = text.find(marker, start)
        if at < 0:
            raise ValueError(f"demonstration {row.get('uid')!r}: loss_from {marker!r} is not in its completion")
        start = at
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    # the token that writes the loss's first character is trained, even where BPE merged it with what precedes
    mask = [int(end > start) for _, end in enc["offset_mapping"]]
    return {"input_ids": list(enc["input_ids"]), "completion_mask": mask}


def sft_dataset(rows: Sequence[dict[str, Any]], tokenizer: Any, max_length: int | None) -> tuple[Any, int]:
    """(tokenized Dataset: `input_ids` + `completion_mask`, number of rows dropped for exceeding max_length tokens;
    None keeps all). Tokenized here rather than by TRL so a row can start its loss later (`loss_from`)."""
    from datasets import Dataset

    kept = []
    for row in rows:
        example = tokenize_demonstration(row, tokenizer)
        if max_length is None or len(example["input_ids"]) <= max_length:
            kept.append(example)
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


__all__ = [
    "SFTOutcome",
    "last_checkpoint",
    "load_demonstrations",
    "sft_args",
    "sft_dataset",
    "tokenize_demonstration",
    "train_sft",
]
