"""Typed reward configuration. The defaults are the published GTAlign reward (`recipe/gamellm/tasks/*.py`).

Everything that shapes the reward lives here and in `params.yaml` under `reward:`; variants (the paper's baselines)
differ only in `aggregation`, never in copied code.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Aggregation = Literal["cobb_douglas", "linear", "user", "llm", "ces"]
AGGREGATIONS: tuple[str, ...] = ("cobb_douglas", "linear", "user", "llm", "ces")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Band(_Strict):
    """Soft length band 1/(1+e^{k(lo-n)}) * 1/(1+e^{k(n-hi)}), n counted in whitespace-separated words."""

    lo: float
    hi: float
    k: float = 0.005


class UserWeights(_Strict):
    answer: float = 0.5
    length: float = 0.2
    latency: float = 0.3


class LLMWeights(_Strict):
    format: float = 0.2
    payoff: float = 0.2
    answer: float = 0.4
    length: float = 0.2
    matrix: float = Field(0.0, description="exact matrix-consistency term; 0 = off, as in the published reward")


class RewardConfig(_Strict):
    aggregation: Aggregation = "cobb_douglas"
    alpha: float = Field(0.5, description="user share in cobb_douglas (U^a L^(1-a)) and ces")
    rho: float = Field(-1.0, description="ces exponent; rho<=0 keeps zero-dominance, rho->0 is cobb_douglas")
    epsilon: float = 1e-4
    user: UserWeights = UserWeights()
    llm: LLMWeights = LLMWeights()
    user_band: Band = Band(lo=20, hi=500)  # over the <response> block
    llm_band: Band = Band(lo=500, hi=1000)  # over the whole completion
    latency_scale: float = Field(500.0, description="exp(-chars before <response> / scale)")
    analyze_rule: Literal["sum", "nash", "geometric", "cobb_douglas", "ces"] = Field(
        "sum", description="welfare rule the matrix-consistency term checks against (the prompt's rule is sum)"
    )

    @model_validator(mode="after")
    def _check(self) -> RewardConfig:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.aggregation == "ces" and self.rho == 0:
            raise ValueError("ces with rho=0 is cobb_douglas: use aggregation=cobb_douglas")
        return self


class JudgeOptions(_Strict):
    """params.yaml `reward.judge`: options per judge kind (`gtalign.reward.judges.make_judge(kind, **options)`)."""

    column: dict[str, Any] | None = None
    rule: dict[str, Any] | None = None
    openai: dict[str, Any] | None = None

    def of(self, kind: str) -> dict[str, Any]:
        """The options of judge `kind` ({} for a kind without options; make_judge rejects an unknown kind)."""
        return dict(getattr(self, kind, None) or {})


class RewardParams(RewardConfig):
    """params.yaml `reward:`: the reward (a RewardConfig) and the options of each judge."""

    judge: JudgeOptions = JudgeOptions()

    def config(self, **overrides: Any) -> RewardConfig:
        """The RewardConfig with `overrides` (None values ignored; a mapping merges into its section key by key, so
        `llm={"matrix": 0.2}` keeps the other LLM weights), e.g. an RL variant's aggregation and reward."""
        values = self.model_dump(exclude={"judge"})
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(values.get(key), dict):
                values[key] = {**values[key], **value}
            elif value is not None:
                values[key] = value
        return RewardConfig.model_validate(values)
