"""One request in, one steered answer out: the code every server of the assistant shares.

`gtalign serve` (the OpenAI-compatible server) and the registered MLflow pyfunc (`gtalign/pyfunc_model.py`, served
by `mlflow models serve`) both turn (chat, pricing, params.yaml `steering:`, generation settings) into a
`SteerRequest` with `steer_request`, run `Steerer.generate`, and describe the answer with `answer_fields`. Keeping the
pricing -> transform step and the reading of the answer here means the two ways of serving the model cannot drift:
the same chat and pricing give the same text and the same `gtalign` fields through either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gtalign.game import optimal_cell
from gtalign.modeling import load_model
from gtalign.protocol import named_cell, read_tolerant, response_action
from gtalign.steering.config import SteeringConfig, transform_for
from gtalign.steering.decoder import ANALYZE_MODES, AnalyzeMode, Steerer, SteerOutput, SteerRequest
from gtalign.steering.pricing import PRICINGS, Pricing

__all__ = ["answer_fields", "load_steerer", "request_analyze", "request_pricing", "steer_request"]


def load_steerer(
    folder: str | Path, steering: SteeringConfig, *, batch_size: int, device: str | None = None
) -> Steerer:
    """A `Steerer` over the Hugging Face model in `folder`, re-solving edited matrices with `steering.rule`."""
    model, tokenizer = load_model(folder, device=device)
    return Steerer(model, tokenizer, rule=steering.welfare_rule, batch_size=batch_size)


def request_pricing(pricing: str | None, steering: SteeringConfig) -> Pricing:
    """The pricing regime a request asks for: its own, or the policy's native one when it names none ("" or None).

    An unknown name is a ValueError that lists the regimes this model can be steered to.
    """
    if pricing is None or pricing == "":
        return steering.native_pricing
    if pricing not in PRICINGS:
        raise ValueError(f"unknown pricing {pricing!r}: expected one of {', '.join(PRICINGS)} (or empty for native)")
    return pricing  # type: ignore[return-value]


def request_analyze(analyze: str | None, steering: SteeringConfig) -> AnalyzeMode:
    """Who writes `<analyze>` for a request: its own choice, or params.yaml `steering.analyze` ("" or None)."""
    if analyze is None or analyze == "":
        return steering.analyze
    if analyze not in ANALYZE_MODES:
        raise ValueError(f"unknown analyze {analyze!r}: expected one of {', '.join(ANALYZE_MODES)} (or empty)")
    return analyze  # type: ignore[return-value]


def steer_request(
    chat: Sequence[Mapping[str, str]],
    pricing: str | None,
    steering: SteeringConfig,
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    prompt_ids: list[int] | None = None,
    analyze: str | None = None,
) -> SteerRequest:
    """The `SteerRequest` for one chat: the edit that moves the policy's matrix to `pricing` (none when it is the
    native regime), who writes `<analyze>` (`analyze`: model | solver, default `steering.analyze`), with the
    generation settings. `prompt_ids` passes a tokenization the caller already made."""
    transform = transform_for(request_pricing(pricing, steering), steering)
    return SteerRequest(
        prompt=[dict(m) for m in chat],
        transform=transform,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        prompt_ids=prompt_ids,
        analyze=request_analyze(analyze, steering),
    )


def answer_fields(out: SteerOutput, pricing: str | None, steering: SteeringConfig) -> dict[str, Any]:
    """What the answer did, as plain JSON-able values (the `gtalign` object of `gtalign serve`).

    `steered` says whether the text was spliced (an edited matrix, or the solver's analysis even with no edit),
    `payoff` is the matrix in the final text (the edited one when the answer was steered), `original_payoff` the one
    the model wrote, `optimal_cell` the optimum of `payoff` under `steering.rule`, `chosen_cell` the cell `<analyze>`
    names, `action` what `<response>` does (DA/CQ/AQ), `analyze` who was asked to write `<analyze>` and
    `solver_analyze` whether the solver did, `error` why steering or reading failed (None when neither did).
    """
    reading = read_tolerant(out.text)
    matrix = reading.matrix
    try:
        optimum = optimal_cell(matrix, steering.welfare_rule) if matrix is not None else None
    except ValueError:  # e.g. cobb_douglas on negative payoffs: no optimum under that rule
        optimum = None
    return {
        "pricing": request_pricing(pricing, steering),
        "native_pricing": steering.native_pricing,
        "steered": out.spliced,
        "payoff": matrix.to_dict() if matrix is not None else None,
        "original_payoff": out.original.to_dict() if out.original is not None else None,
        "optimal_cell": optimum,
        "chosen_cell": named_cell(reading.analyze),
        "action": response_action(reading.response),
        "analyze": out.analyze_mode,
        "solver_analyze": out.solver_analyze,
        "error": out.steer_error or reading.error,
    }
