"""Pricing transforms: edits of the payoff matrix for a change of pricing regime (paper §3.3, Figure 4).

All built from params.yaml `steering:` (`gtalign.steering.config`):

* `subscription->api` (the paper's example): under pay-per-token pricing the *user* pays for the words, so each cell's
  user payoff drops by what its action's words cost above the cheapest action's,
  `price_per_100_words * (expected_words[action] - min(expected_words)) / 100`, and never below 0; `revenue_share`
  of that charge can be credited to the LLM (the provider earns what the user pays; 0 = the paper, which only
  charges the user).
* `api->subscription`: the provider pays, so the same charge comes off the LLM payoff.
* `published`: the additive shifts of the published code (`inference_v2.transform_payoffs`), kept for comparison:
  if `scale_llm != 0`, LLM += scale_llm on every cell and user += 0 / +1 / +0.5 for DA / AQ / CQ; else if
  `scale_user != 0`, user += scale_user on every cell and LLM += +1 / +0.5 / 0 for DA / AQ / CQ; each value rounded to
  one decimal as that code does. Its `main()` uses (0, -0.5), its `run()` (-2, -2).
* `none`: no edit.

Why expected *words per action* and not fixed constants: what a pricing change costs depends on how long each action
makes the interaction. A clarifying question is short itself but defers the answer to another turn, so its billed
words are the question plus the answer it defers (`expected_words_from_completions` computes the table from the
demonstrations; params.yaml holds the values used).

Why the charge *above the cheapest action*, floored at 0: the cheapest action's cost comes off every cell alike, which
no choice under the sum rule depends on, yet charging it drives the payoffs negative at any price that moves an
optimum, into a range the policy never wrote and the product rules are not defined on; the floor keeps the edited
matrix in the demonstrations' range.

Worth knowing: under the prompt's *sum* welfare a cost moved from the user to the LLM leaves every cell's welfare
unchanged, so `subscription->api` and `api->subscription` pick the same cells (only the user/LLM tie-breaks differ);
they part ways under the Nash product (`rule: nash`).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

from gtalign.game import ACTIONS, Payoff, PayoffMatrix, split_cell
from gtalign.protocol import read_tolerant, response_action

__all__ = [
    "PRICINGS",
    "PRICING_MODES",
    "Pricing",
    "PricingMode",
    "PricingTransform",
    "expected_words_from_completions",
    "published_transform",
]

PricingMode = Literal["none", "subscription->api", "api->subscription", "published"]
PRICING_MODES: tuple[str, ...] = get_args(PricingMode)
Pricing = Literal["subscription", "api"]
PRICINGS: tuple[str, ...] = get_args(Pricing)
# The published transform's per-action shifts: (user shift when the LLM pays, LLM shift when the user pays).
_PUBLISHED_SHIFTS: dict[str, tuple[float, float]] = {"DA": (0.0, 1.0), "AQ": (1.0, 0.5), "CQ": (0.5, 0.0)}


def _round1(x: float) -> float:
    """One decimal, as the prompt asks and as the published transform rounds (`round(x, 1)`)."""
    return round(x, 1)


@dataclass(frozen=True)
class PricingTransform:
    """An edit of the payoff matrix for a change of pricing regime; calling it on a matrix returns the edited one.

    Every edited value is rounded to one decimal, so the matrix re-solved here is exactly the one rendered into the
    answer (`render_payoff`) and re-read by `<analyze>`.
    """

    mode: PricingMode = "none"
    price_per_100_words: float = 2.0  # payoff units per 100 billed words (cost modes)
    expected_words: Mapping[str, float] = field(default_factory=lambda: {"DA": 13.0, "CQ": 42.0, "AQ": 37.0})
    revenue_share: float = 0.0  # subscription->api only: share of the user's cost credited to the LLM
    scale_llm: float = 0.0  # published only
    scale_user: float = -0.5  # published only

    def __post_init__(self) -> None:
        if self.mode not in PRICING_MODES:
            raise ValueError(f"unknown pricing mode {self.mode!r} (expected one of {', '.join(PRICING_MODES)})")
        missing = [a for a in ACTIONS if a not in self.expected_words]
        if missing:
            raise ValueError(f"expected_words lacks action(s) {missing}")
        for name in ("price_per_100_words", "revenue_share", "scale_llm", "scale_user"):
            if not math.isfinite(float(getattr(self, name))):
                raise ValueError(f"{name} must be finite")
        if any(not math.isfinite(float(self.expected_words[a])) or self.expected_words[a] < 0 for a in ACTIONS):
            raise ValueError("expected_words must be finite and >= 0")
        object.__setattr__(self, "expected_words", {a: float(self.expected_words[a]) for a in ACTIONS})

    @property
    def is_identity(self) -> bool:
        return self.mode == "none"

    def cost(self, action: str) -> float:
        """The token cost of one action in payoff units: price times the words the action is expected to bill."""
        return self.price_per_100_words * self.expected_words[action] / 100.0

    def charge(self, action: str) -> float:
        """What the cost modes charge a cell with `action`: its cost above the cheapest action's."""
        return self.cost(action) - min(self.cost(a) for a in ACTIONS)

    def shift(self, action: str) -> tuple[float, float]:
        """(LLM shift, user shift) this transform adds to every cell with `action` (before rounding and, in the cost
        modes, the floor at 0)."""
        c = self.charge(action)
        if self.mode == "subscription->api":
            return self.revenue_share * c, -c if c else 0.0  # no "-0.00" for the cheapest action in reports
        if self.mode == "api->subscription":
            return -c if c else 0.0, 0.0
        if self.mode == "published":
            if self.scale_llm != 0:
                return self.scale_llm, _PUBLISHED_SHIFTS[action][0]
            if self.scale_user != 0:
                return _PUBLISHED_SHIFTS[action][1], self.scale_user
        return 0.0, 0.0

    def __call__(self, matrix: PayoffMatrix) -> PayoffMatrix:
        floor = self.mode in ("subscription->api", "api->subscription")

        def shifted(value: float, delta: float) -> float:
            new = _round1(value + delta)
            return max(new, 0.0) if floor and value >= 0 and delta < 0 else new

        def edit(cell: str, p: Payoff) -> Payoff:
            d_llm, d_user = self.shift(split_cell(cell)[1])
            return Payoff(llm=shifted(p.llm, d_llm), user=shifted(p.user, d_user))

        return matrix if self.is_identity else matrix.map(edit)

    def describe(self) -> str:
        """One line for reports: the shift per action."""
        if self.is_identity:
            return "none"
        parts = []
        for a in ACTIONS:
            d_llm, d_user = self.shift(a)
            parts.append(f"{a}: LLM {d_llm:+.2f}, user {d_user:+.2f}")
        return f"{self.mode} ({'; '.join(parts)})"


def published_transform(scale_llm: float = 0.0, scale_user: float = -0.5) -> PricingTransform:
    """The published code's transform; the defaults are its `main()` call (scale_llm=0, scale_user=-0.5)."""
    return PricingTransform(mode="published", scale_llm=scale_llm, scale_user=scale_user)


def expected_words_from_completions(completions: Iterable[str]) -> dict[str, dict[str, float]]:
    """Billed words per action from four-block completions (e.g. the SFT demonstrations).

    Returns `{"response": {action: mean words of responses acting so}, "billed": {...}, "count": {...}}`. Billed words
    count what the action makes the interaction cost: DA and AQ their own response; CQ its question plus the mean DA
    answer the question defers to the next turn. An action never seen gets 0 words (and count 0): fill it by hand.
    """
    words: dict[str, list[int]] = defaultdict(list)
    for text in completions:
        response = read_tolerant(text).response
        action = response_action(response)
        if action is not None:
            words[action].append(len((response or "").split()))
    mean = {a: statistics.fmean(words[a]) if words[a] else 0.0 for a in ACTIONS}
    billed = {"DA": mean["DA"], "CQ": mean["CQ"] + mean["DA"], "AQ": mean["AQ"]}
    return {"response": mean, "billed": billed, "count": {a: float(len(words[a])) for a in ACTIONS}}
