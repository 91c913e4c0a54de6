"""params.yaml `evaluate:`: how every model is generated from, scored and compared (`gtalign.evaluate.stages`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EvaluateConfig(BaseModel):
    """The `evaluate:` section of params.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    splits: list[str] = Field(default_factory=lambda: ["test"], description="curated splits evaluated on")
    sources: list[str] | None = Field(None, description="restrict to these sources (None = all seven)")
    per_source: int | None = Field(None, ge=1, description="seeded sample per source (tiny preset); None = all")
    max_new_tokens: int = Field(256, ge=1)
    batch_size: int = Field(8, ge=1)
    temperature: float = Field(0.0, ge=0.0, description="0 = greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    bootstrap_resamples: int = Field(1000, ge=0)
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    seed: int = 0
    judge: str = Field("rule", description="column | rule | openai (options under reward.judge.<kind>)")
    aggregation: str = Field("cobb_douglas", description="welfare every model is compared by")
    device: str | None = Field("auto", description="auto (CUDA when available) | cpu | cuda:0 | ...")
    normalize_hypervolume: bool = Field(False, description="divide HV by the ranges (App. C.1 does not)")
    paper_models: dict[str, str] = Field(default_factory=dict, description="our model -> paper method key")
