"""params.yaml `steering:` as a strict typed config, and how a request's pricing becomes a transform.

Every model here forbids unknown keys, so a misspelt key in params.yaml fails loudly (the error names the section
and the key) instead of silently falling back to a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gtalign.game import ACTIONS, WelfareRule
from gtalign.steering.decoder import AnalyzeMode
from gtalign.steering.pricing import (
    PRICINGS,
    Pricing,
    PricingMode,
    PricingTransform,
    published_transform,
)

__all__ = [
    "Edit",
    "PublishedScales",
    "SteeringConfig",
    "SteeringEvalConfig",
    "counterfactual_edits",
    "logged_steering",
    "steering_entry",
    "transform_for",
]

Direction = Literal["subscription->api", "api->subscription"]


class PublishedScales(BaseModel):
    """params.yaml `steering.published.<direction>`: the published transform's scales for one direction."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="params.yaml steering.published")

    scale_llm: float = 0.0
    scale_user: float = -0.5


class SteeringEvalConfig(BaseModel):
    """params.yaml `steering.eval:`, what `gtalign steer eval` runs (`gtalign.evaluate.steering`)."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="params.yaml steering.eval")

    model: str | None = Field(None, description="checkpoint folder or models:/NAME@ALIAS; --model overrides")
    per_source: int = Field(10, ge=1, description="held-out prompts per source (seeded sample)")
    split: Literal["train", "dev", "test"] = Field(
        "test", description="the curated split steered: test (the report) | dev (to choose settings)"
    )
    seed: int = 0
    modes: list[str] = Field(
        default_factory=lambda: ["subscription->api", "api->subscription", "published"],
        description="pricing modes to steer with (not `none`)",
    )
    prices: list[float] | None = Field(None, description="cost modes run at each price; None = price_per_100_words")
    analyze_modes: list[AnalyzeMode] = Field(
        default_factory=lambda: ["model"],
        min_length=1,
        description="who writes <analyze> in the steered runs: model, solver (reported under `solver/`), or both",
    )
    device: str | None = None

    @field_validator("analyze_modes")
    @classmethod
    def _distinct(cls, value: list[AnalyzeMode]) -> list[AnalyzeMode]:
        if len(set(value)) != len(value):
            raise ValueError(f"analyze_modes lists a mode twice: {value}")
        return value


class SteeringConfig(BaseModel):
    """params.yaml `steering:`: how pricing requests become transforms, and (`eval`) the steering evaluation."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="params.yaml steering")

    native_pricing: Pricing = Field("subscription", description="the regime the policy's matrices assume")
    transform: Literal["cost", "published"] = Field("cost", description="cost: per-word cost; published: additive")
    price_per_100_words: float = Field(2.0, ge=0)
    revenue_share: float = Field(0.0, ge=0, le=1)
    expected_words: dict[str, float] = Field(default_factory=lambda: {"DA": 13.0, "CQ": 42.0, "AQ": 37.0})
    published: dict[Direction, PublishedScales] = Field(
        default_factory=lambda: {
            "subscription->api": PublishedScales(scale_llm=0.0, scale_user=-0.5),
            "api->subscription": PublishedScales(scale_llm=-2.0, scale_user=0.0),
        }
    )
    rule: str = Field("sum", description="welfare rule used to re-solve the edited matrix (the prompt's: sum)")
    analyze: AnalyzeMode = Field("model", description="who writes <analyze> when serving: the model, or the solver")
    max_new_tokens: int = Field(320, ge=1)
    batch_size: int = Field(8, ge=1)
    eval: SteeringEvalConfig = Field(default_factory=SteeringEvalConfig)

    @field_validator("expected_words")
    @classmethod
    def _all_actions(cls, value: dict[str, float]) -> dict[str, float]:
        missing = [a for a in ACTIONS if a not in value]
        if missing:
            raise ValueError(f"expected_words needs DA, CQ and AQ; missing {missing}")
        return value

    @property
    def welfare_rule(self) -> WelfareRule:
        return WelfareRule(kind=self.rule)  # type: ignore[arg-type]

    def published_transform(self, direction: Direction) -> PricingTransform:
        """The published additive shifts for `direction`, with the scales params give for it."""
        scales = self.published.get(direction)
        return published_transform(**scales.model_dump()) if scales else published_transform()

    def make_transform(self, mode: PricingMode) -> PricingTransform:
        """The transform for one mode; `published` uses the scales params give for the subscription->api edit."""
        if mode == "published":
            return self.published_transform("subscription->api")
        return PricingTransform(
            mode=mode,
            price_per_100_words=self.price_per_100_words,
            expected_words=self.expected_words,
            revenue_share=self.revenue_share,
        )


def transform_for(pricing: Pricing | None, cfg: SteeringConfig) -> PricingTransform | None:
    """The edit that moves the policy's matrix from its native pricing to `pricing`; None when there is nothing to do.

    `cfg.transform == "published"` swaps the cost edit for the published additive shifts of the same direction.
    """
    if pricing is None or pricing == cfg.native_pricing:
        return None
    if pricing not in PRICINGS:
        raise ValueError(f"unknown pricing {pricing!r} (expected one of {', '.join(PRICINGS)})")
    direction: Direction = f"{cfg.native_pricing}->{pricing}"  # type: ignore[assignment]
    if cfg.transform == "published":
        return cfg.published_transform(direction)
    return cfg.make_transform(direction)


@dataclass(frozen=True, slots=True)
class Edit:
    """A pricing edit of the matrix, named as reports show it."""

    name: str
    transform: PricingTransform


def counterfactual_edits(cfg: SteeringConfig, *, published: bool = True) -> tuple[Edit, ...]:
    """The edits steering applies at inference: each cost mode of `steering.eval.modes` at each evaluated price, and
    (`published`) the published shifts in both directions (`steering.published`). Deduplicated, in a fixed order."""
    edits: dict[str, Edit] = {}
    prices = cfg.eval.prices or [cfg.price_per_100_words]
    for mode in cfg.eval.modes:
        if mode == "published":
            if not published:
                continue
            for direction in cfg.published:
                edits[f"published {direction}"] = Edit(f"published {direction}", cfg.published_transform(direction))
            continue
        for price in prices:
            transform = cfg.model_copy(update={"price_per_100_words": price}).make_transform(mode)  # type: ignore[arg-type]
            edits[f"{mode} @{price:g}"] = Edit(f"{mode} @{price:g}", transform)
    return tuple(edits.values())


# The `steering` entry of a registered model's `model_config` (gtalign.registry writes it, the pyfunc and
# `gtalign serve` read it): a JSON string, because MLflow also logs the model_config as run params, flattening dicts
# into keys, and `subscription->api` is not a valid param key. The `eval` subsection is the steering evaluation's,
# not the model's, so it is left out.
def steering_entry(cfg: SteeringConfig | None) -> str:
    """params.yaml `steering:` (defaults when None) as the `model_config["steering"]` entry a model is logged with."""
    return (cfg or SteeringConfig()).model_dump_json(exclude={"eval"})


def logged_steering(model_config: Mapping[str, Any]) -> SteeringConfig | None:
    """The steering a registered model was logged with; None for a version logged before it was (or no pyfunc)."""
    raw = model_config.get("steering")
    return SteeringConfig.model_validate_json(raw) if raw else None
