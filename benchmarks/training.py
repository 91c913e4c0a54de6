"""`make bench` sections for training: SFT and RL-rollout throughput, and our GRPO step against bare TRL's.

Each function takes a scratch folder and returns a markdown section (register them in benchmarks/run.py SECTIONS).
They need the tiny pipeline's artifacts: artifacts/curated and artifacts/demonstrations (`gtalign demo`), and use
artifacts/models/sft when it exists (realistic completions and rewards), else a freshly built base model.

The overhead comparison runs both trainers side by side in one process, interleaved (ours, bare, ours, bare) so that
machine load drifts hit both, with the same model, data, GRPOConfig, seed and reward numbers; "ours" is what
`gtalign train rl` runs (the `WelfareReward` adapter with per-source `log_metric`s, MLflow reporting into our own
run), "bare" is `trl.GRPOTrainer` with a plain function returning `score_batch`'s scores and no reporting.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _require_artifacts() -> Path:
    demos = ROOT / "artifacts" / "demonstrations" / "demonstrations.jsonl"
    if not demos.is_file() or not (ROOT / "artifacts" / "curated" / "curated.parquet").is_file():
        raise SystemExit("training benchmarks need artifacts/curated and artifacts/demonstrations: run `gtalign demo`")
    return demos


def _base_model(tmp: Path) -> Path:
    from gtalign.modeling import TinyModelConfig, base_corpus, build_base_model

    out = tmp / "bench-base"
    if not (out / "config.json").is_file():
        corpus = base_corpus(ROOT / "artifacts" / "curated" / "curated.parquet", _require_artifacts())
        build_base_model(out, corpus, TinyModelConfig())
    return out


def _policy(tmp: Path) -> tuple[Path, str]:
    sft = ROOT / "artifacts" / "models" / "sft"
    if (sft / "config.json").is_file():
        return sft, "the SFT model (artifacts/models/sft)"
    return _base_model(tmp), "an untrained base model (no artifacts/models/sft: completions run to the length cap)"


def _params() -> Any:
    from gtalign.config import load_typed_params

    return load_typed_params(ROOT / "params.yaml")


def bench_sft_throughput(tmp: Path, steps: int = 24, batch: int = 8) -> str:
    """Training tokens/s of `train_sft` (TRL SFTTrainer) on the demonstrations, tiny model, this machine."""
    from gtalign.train.sft import train_sft

    demos = _require_artifacts()
    base = _base_model(tmp)
    params = _params()
    trl_args = {"max_steps": steps, "per_device_train_batch_size": batch, "save_steps": 10_000, "logging_steps": steps}
    cfg = params.sft.model_copy(update={"resume": False, "args": {**params.sft.args, **trl_args}})
    out = train_sft(base, demos, tmp / "sft-out", tmp / "sft-ckpt", cfg)
    tokens_per_s = out.train_tokens / out.train_seconds
    return (
        "## SFT throughput (`gtalign.train.sft.train_sft`, TRL SFTTrainer)\n\n"
        f"Tiny model (params.yaml `base_model`), {steps} steps x {batch} demonstrations, "
        f"`train_sampling_strategy={cfg.args['train_sampling_strategy']}`, float32 on CPU; tokens are prompt + "
        "completion without padding (what `include_num_input_tokens_seen='non_padding'` counts).\n\n"
        "| metric | value |\n|---|---|\n"
        f"| wall time (trainer.train) | {out.train_seconds:.1f} s |\n"
        f"| step time | {out.train_seconds / steps:.2f} s |\n"
        f"| **training tokens/s** | **{tokens_per_s:,.0f}** |\n"
    )


class _GenerationTimer:
    """Records TRL's `transformers.generate` profiling blocks (TRL reports them only to wandb/MLflow)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def __enter__(self) -> _GenerationTimer:
        import trl.trainer.grpo_trainer as grpo

        self._grpo, self._orig = grpo, grpo.profiling_context
        timer = self

        class _Ctx:
            def __init__(self, name: str) -> None:
                self.name = name

            def __enter__(self) -> None:
                self.t0 = time.perf_counter()

            def __exit__(self, *exc: Any) -> None:
                if self.name == "transformers.generate":
                    timer.seconds.append(time.perf_counter() - self.t0)

        grpo.profiling_context = lambda trainer, name: _Ctx(name)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._grpo.profiling_context = self._orig


def _rl_cfg(steps: int, completion: int) -> Any:
    rl = _params().rl
    trl_args = {"max_steps": steps, "save_steps": 10_000, "max_completion_length": completion}
    return rl.model_copy(update={"resume": False, "args": {**rl.args, **trl_args}})


def bench_rl_generation(tmp: Path, steps: int = 6, completion: int = 256) -> str:
    """Rollout tokens/s inside GRPO (HF generate, sampling at temperature 1, the tiny preset's batch)."""
    from gtalign.train.rl import train_rl
    from gtalign.train.sft import load_demonstrations
    from gtalign.train.stages import make_reward

    demos = load_demonstrations(_require_artifacts())
    policy, what = _policy(tmp)
    cfg = _rl_cfg(steps, completion)
    reward = make_reward(_params().reward, cfg)
    with _GenerationTimer() as timer:
        out = train_rl(policy, demos, tmp / "rl-gen", tmp / "rl-gen-ckpt", cfg, reward)
    lengths = [h["completions/mean_length"] for h in out.log_history if "completions/mean_length" in h]
    batch, group = cfg.args["per_device_train_batch_size"], cfg.args["num_generations"]
    tokens = sum(lengths) * batch
    gen = sum(timer.seconds)
    return (
        "## RL rollout generation (GRPO, `transformers.generate` inside TRL)\n\n"
        f"{steps} GRPO steps from {what}: {batch} completions per step ({batch // group} prompts x {group}), "
        f"max {completion} new tokens, temperature {cfg.args['temperature']}, KV cache, float32 on CPU.\n\n"
        "| metric | value |\n|---|---|\n"
        f"| generated tokens | {tokens:,.0f} (mean length {statistics.fmean(lengths):.0f}) |\n"
        f"| generation time | {gen:.1f} s of {out.train_seconds:.1f} s training |\n"
        f"| **generation tokens/s** | **{tokens / gen:,.0f}** |\n"
        f"| share of the step spent generating | {gen / out.train_seconds:.0%} |\n"
    )


def _step_times(history: list[dict[str, Any]], skip: int) -> list[float]:
    return [h["step_time"] for h in history if "step_time" in h and h.get("step", 0) > skip]


def _ours(policy: Path, demos: list, tmp: Path, tag: str, steps: int, completion: int) -> list[float]:
    """What `gtalign train rl` runs: the adapter with per-source metrics, MLflow reporting into our own run."""
    from gtalign import tracking
    from gtalign.train.rl import RL_ALGORITHM_TAG, train_rl
    from gtalign.train.stages import make_reward

    cfg = _rl_cfg(steps, completion)
    reward = make_reward(_params().reward, cfg)
    uri = f"sqlite:///{tmp / 'bench-mlflow.db'}"
    tags = {"gtalign.rl_algorithm": RL_ALGORITHM_TAG}
    with tracking.run(tmp, f"bench-{tag}", params={"rl": cfg.model_dump()}, tags=tags, tracking_uri=uri):
        out = train_rl(policy, demos, tmp / tag, tmp / f"{tag}-ckpt", cfg, reward, report_to="mlflow")
    return _step_times(out.log_history, skip=1)


def _bare(policy: Path, demos: list, tmp: Path, tag: str, steps: int, completion: int) -> list[float]:
    """Bare TRL: GRPOTrainer, a plain reward function over `score_batch`, same config, no reporting."""
    from trl import GRPOTrainer

    from gtalign.modeling import load_model
    from gtalign.reward import RewardInput, score_batch
    from gtalign.reward.judges import make_judge
    from gtalign.train.reward_fn import completion_text, parse_extra_info
    from gtalign.train.rl import grpo_args, rl_dataset, rl_rows

    cfg = _rl_cfg(steps, completion)
    judge, rcfg = make_judge(cfg.judge), _params().reward.config(aggregation=cfg.variant)

    def welfare(completions, data_source, ground_truth, extra_info, **_):
        rows = [
            RewardInput(completion_text(c), s, g, parse_extra_info(e))
            for c, s, g, e in zip(completions, data_source, ground_truth, extra_info, strict=True)
        ]
        return [r.score for r in score_batch(rows, judge, rcfg)]

    model, tokenizer = load_model(policy, dtype=cfg.dtype)
    dataset, _ = rl_dataset(rl_rows(demos), tokenizer, cfg.max_prompt_tokens)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[welfare],
        args=grpo_args(cfg, tmp / f"{tag}-ckpt", report_to="none", run_name=tag),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    trainer.train()
    return _step_times(list(trainer.state.log_history), skip=1)


def bench_rl_overhead(tmp: Path, steps: int = 8, completion: int = 256, rounds: int = 3) -> str:
    """Our GRPO step time against bare TRL's, same reward numbers, interleaved runs; target <= 1.05x.

    Step k of "ours" and step k of "bare" sample the same completions (same seed, model, data and config), so the
    comparison is per matched step: the total over matched steps, and the median of the per-step ratios. (A median
    of raw step times is misleading here: with `num_iterations` > 1 half the steps generate and half only update.)
    """
    from gtalign.train.sft import load_demonstrations

    demos = load_demonstrations(_require_artifacts())
    policy, what = _policy(tmp)
    ours: list[float] = []
    bare: list[float] = []
    for i in range(rounds):
        o = _ours(policy, demos, tmp, f"ours{i}", steps, completion)
        b = _bare(policy, demos, tmp, f"bare{i}", steps, completion)
        assert len(o) == len(b), f"round {i}: {len(o)} vs {len(b)} logged steps"
        ours += o
        bare += b
    total = sum(ours) / sum(bare)
    paired = statistics.median(a / b for a, b in zip(ours, bare, strict=True))
    return (
        "## GRPO step: our trainer vs bare TRL\n\n"
        f"{rounds} interleaved rounds x {steps} steps each (first step of a run skipped), from {what}, "
        f"max {completion} new tokens, params.yaml `rl` otherwise; both runs use the same seed, GRPOConfig and reward "
        "numbers, so step k of each samples the same completions. Step time is TRL's own `step_time`.\n\n"
        "| trainer | total over matched steps | mean step | steps |\n|---|---|---|---|\n"
        f"| ours (adapter + per-source metrics + MLflow) | {sum(ours):.2f} s | {statistics.fmean(ours):.3f} s | "
        f"{len(ours)} |\n"
        f"| bare `GRPOTrainer` (plain reward fn, no reporting) | {sum(bare):.2f} s | {statistics.fmean(bare):.3f} s | "
        f"{len(bare)} |\n"
        f"| **ratio** | **{total:.3f}x** (totals) | {paired:.3f}x (median of per-step ratios) | target <= 1.05x |\n"
    )


SECTIONS = [bench_sft_throughput, bench_rl_generation, bench_rl_overhead]

if __name__ == "__main__":
    import sys
    import tempfile

    only = sys.argv[1] if len(sys.argv) > 1 else ""
    with tempfile.TemporaryDirectory() as d:
        for section in SECTIONS:
            if only in section.__name__:
                print(section(Path(d)))
