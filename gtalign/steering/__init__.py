"""Pricing steering (paper §3.3, Figure 4): stop at `</payoff>`, edit the matrix for a pricing regime, splice the
edited matrix back and let the model go on, so that `<analyze>` and `<response>` act on the edited game.

How to run it: `gtalign steer eval --model PATH|models:/gtalign-assistant@champion` (held-out prompts, report +
metrics + MLflow run; `gtalign.evaluate.steering`), or `gtalign serve` (the HTTP server takes `pricing` per request),
or in Python::

    steerer = Steerer(model, tokenizer)
    outs = steerer.generate([SteerRequest(messages, transform=transform_for("api", cfg))])

The modules: `pricing` (the matrix edits), `config` (params.yaml `steering:`, pricing -> transform), `decoder` (the
splice, one prefill per answer; `SteerRequest(analyze="solver")` also splices the exact solver's `<analyze>`, so
the model writes only the response).
"""

from gtalign.steering.config import (
    PublishedScales,
    SteeringConfig,
    SteeringEvalConfig,
    transform_for,
)
from gtalign.steering.decoder import (
    ANALYZE_MODES,
    PAYOFF_CLOSE,
    PAYOFF_OPEN,
    AnalyzeMode,
    Steerer,
    SteerOutput,
    SteerRequest,
)
from gtalign.steering.pricing import (
    PRICING_MODES,
    PRICINGS,
    Pricing,
    PricingMode,
    PricingTransform,
    expected_words_from_completions,
    published_transform,
)

__all__ = [
    "ANALYZE_MODES",
    "PAYOFF_CLOSE",
    "PAYOFF_OPEN",
    "PRICINGS",
    "PRICING_MODES",
    "AnalyzeMode",
    "Pricing",
    "PricingMode",
    "PricingTransform",
    "PublishedScales",
    "SteerOutput",
    "SteerRequest",
    "Steerer",
    "SteeringConfig",
    "SteeringEvalConfig",
    "expected_words_from_completions",
    "published_transform",
    "transform_for",
]
