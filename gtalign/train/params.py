"""params.yaml `base_model:`, `sft:` and `rl:`, typed like TRL's configs.

`SFTParams` and `RLParams` hold only what gtalign itself decides (the starting model, the reward, the held-out
evaluation, the Dagster checks, resuming). Every field of `trl.SFTConfig` / `trl.GRPOConfig` (max_steps,
learning_rate, num_generations, use_vllm, deepspeed, ...) lives under the section's `args:` and reaches TRL as is, so
TRL's documentation is the reference for those names and TRL's constructor rejects a misspelt one
(`gtalign.train.common.trl_config` reports it as a ParamsError naming the section).

This module imports no trainer, so `gtalign.config.Params` can validate every section up front.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from gtalign.modeling import TinyModelConfig
from gtalign.reward.config import AGGREGATIONS, Aggregation
from gtalign.reward.normalize import METHODS


class _Section(BaseModel):
    """A misspelt key fails loudly instead of silently leaving a default in place."""

    model_config = ConfigDict(extra="forbid")


class EvalParams(_Section):
    """Held-out evaluation: greedy generations on curated rows never trained on, scored like the RL reward."""

    splits: list[str] = Field(default_factory=lambda: ["dev"])
    per_source: int = Field(20, ge=1, description="rows per source (sources = those with demonstrations)")
    max_new_tokens: int = Field(320, ge=1)
    batch_size: int = Field(32, ge=1)
    judge: str = Field("rule", description="judge for held-out scoring (rule: offline, deterministic)")
    seed: int = 0


class BaseModelParams(TinyModelConfig):
    """params.yaml `base_model:`: the tiny model built here (its `TinyModelConfig` fields), or a pointer to a
    pretrained one."""

    kind: str = Field("tiny", pattern="^(tiny|pretrained)$")
    pretrained: str | None = Field(None, description="HF folder or hub name when kind=pretrained")
    corpus_splits: list[str] = Field(default_factory=lambda: ["train", "dev"])


class SFTParams(_Section):
    """params.yaml `sft:`: gtalign's own settings; everything `trl.SFTConfig` takes goes under `args`."""

    init: str = Field("base", description="'base' (artifacts/models/base) or a model folder / hub name")
    launcher: str = Field(
        "python",
        description="how the Dagster asset and the dvc.yaml stage start this training: `python` = one process, or "
        "e.g. `accelerate launch --config_file configs/accelerate/cpu_ddp.yaml` (then `-m gtalign...` follows)",
    )
    dtype: str = Field("float32", description="weights dtype when loading: float32 on CPU, auto/bfloat16 on GPU")
    lora: dict[str, Any] | None = Field(
        None, description="peft LoraConfig kwargs, e.g. {r: 16, target_modules: all-linear}"
    )
    resume: bool = Field(True, description="resume from the last complete checkpoint of the same configuration")
    min_strict_valid: float = Field(0.9, ge=0, le=1, description="the Dagster check's threshold on held-out prompts")
    eval: EvalParams = Field(default_factory=EvalParams)
    args: dict[str, Any] = Field(
        default_factory=dict,
        description="trl.SFTConfig fields, passed as is (max_steps, learning_rate, max_length, deepspeed, ...)",
    )


class RLVariant(_Section):
    """A named RL run besides the plain aggregations (params.yaml `rl.variants.<name>`): the same GRPO run from the
    same SFT model with its reward and TRL args changed by these overrides, nothing else. It names what the
    paper's ablations and a seed spread need: `consistency` (GTAlign + the exact matrix-consistency term) or
    `cobb_douglas-seed1` (GTAlign with another RL seed, `replicate_of: cobb_douglas`)."""

    aggregation: Aggregation = Field("cobb_douglas", description="the welfare aggregation of its reward")
    reward: dict[str, Any] = Field(
        default_factory=dict,
        description="overrides of params.yaml `reward:`, merged key by key (e.g. {llm: {matrix: 0.2}})",
    )
    args: dict[str, Any] = Field(default_factory=dict, description="overrides of `rl.args` (e.g. {seed: 1})")
    replicate_of: str | None = Field(
        None, description="the variant this one repeats with other args (a seed): the report's seed spread groups them"
    )


class RLParams(_Section):
    """params.yaml `rl:`: the reward (variant, judge, normalisation) and what gtalign checks; everything
    `trl.GRPOConfig` takes goes under `args`."""

    variant: str = Field(
        "cobb_douglas",
        description="reward aggregation: cobb_douglas (GTAlign) | user | llm | linear | ces, or a name in `variants`",
    )
    variants: dict[str, RLVariant] = Field(
        default_factory=dict, description="named variants (ablations, seed replicates): overrides of reward and args"
    )
    init: str = Field("sft", description="'sft', 'base', or a model folder / hub name")
    launcher: str = Field(
        "python",
        description="how the Dagster asset and the dvc.yaml stage start this training: `python` = one process, or "
        "e.g. `accelerate launch --config_file configs/accelerate/cpu_ddp.yaml` (then `-m gtalign...` follows)",
    )
    judge: str = Field("rule", description="rule (offline, CPU) | openai (a served judge) | column")
    judge_options: dict[str, Any] = Field(default_factory=dict, description="over params.yaml reward.judge.<judge>")
    normalization: str = Field("none", description="per-source reward normalisation: " + " | ".join(METHODS))
    max_prompt_tokens: int | None = Field(512, description="prompts longer than this are left out (CPU time)")
    dtype: str = "float32"
    lora: dict[str, Any] | None = None
    resume: bool = True
    max_judge_failure_rate: float | None = Field(0.05, description="stop when the run's judge failure rate exceeds")
    collapse_ratio: float = Field(0.8, description="Dagster check: held-out welfare >= ratio x the starting model's")
    eval: EvalParams = Field(default_factory=EvalParams)
    args: dict[str, Any] = Field(
        default_factory=dict,
        description="trl.GRPOConfig fields, passed as is (max_steps, learning_rate, num_generations, use_vllm, ...)",
    )

    @field_validator("normalization")
    @classmethod
    def _one_of(cls, v: str, info: ValidationInfo) -> str:
        if v not in METHODS:
            raise ValueError(f"rl.{info.field_name} must be one of {', '.join(METHODS)}, got {v!r}")
        return v

    @model_validator(mode="after")
    def _known_variants(self) -> RLParams:
        for name, spec in self.variants.items():
            if name in AGGREGATIONS:
                raise ValueError(f"rl.variants.{name}: the name is a built-in aggregation; pick another name")
            if spec.replicate_of is not None and spec.replicate_of not in self.known_variants:
                raise ValueError(f"rl.variants.{name}.replicate_of: unknown variant {spec.replicate_of!r}")
        self.check_variant(self.variant, "rl.variant")
        return self

    @property
    def known_variants(self) -> tuple[str, ...]:
        return (*AGGREGATIONS, *self.variants)

    def check_variant(self, variant: str, where: str) -> None:
        if variant not in self.known_variants:
            raise ValueError(f"{where}: must be one of {', '.join(self.known_variants)}, got {variant!r}")

    @property
    def aggregation(self) -> str:
        """The welfare aggregation of this run's reward."""
        spec = self.variants.get(self.variant)
        return spec.aggregation if spec is not None else self.variant

    def reward_overrides(self) -> dict[str, Any]:
        """What this run changes in params.yaml `reward:` (`RewardParams.config(**overrides)`)."""
        spec = self.variants.get(self.variant)
        return {"aggregation": self.aggregation, **(spec.reward if spec is not None else {})}

    def replicates(self) -> dict[str, list[str]]:
        """Each variant that has seed replicates -> itself and its replicates, in params order."""
        groups: dict[str, list[str]] = {}
        for name, spec in self.variants.items():
            if spec.replicate_of is not None:
                groups.setdefault(spec.replicate_of, [spec.replicate_of]).append(name)
        return groups

    def with_variant(self, variant: str | None) -> RLParams:
        """These params for `variant` (validated; a named variant's `args` merged over `rl.args`), or unchanged for
        None (params.yaml `rl.variant`)."""
        if not variant:
            variant = self.variant
        self.check_variant(variant, "the RL variant")
        spec = self.variants.get(variant)
        args = {**self.args, **(spec.args if spec is not None else {})}
        return RLParams.model_validate({**self.model_dump(), "variant": variant, "args": args})


__all__ = ["BaseModelParams", "EvalParams", "RLParams", "RLVariant", "SFTParams"]
