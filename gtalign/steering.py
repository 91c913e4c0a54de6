"""Pricing steering (paper §3.3, Figure 4): stop at `</payoff>`, edit the matrix for a pricing regime, splice the
edited matrix back and let the model go on, so that `<analyze>` and `<response>` act on the edited game.

How to run it: `gtalign steer eval --model PATH|models:/gtalign-assistant@champion` (held-out prompts, report +
metrics + MLflow run), or `gtalign serve` (the HTTP server takes `pricing` per request), or in Python::

    steerer = Steerer(model, tokenizer)
    outs = steerer.generate([SteerRequest(messages, transform=transform_for("api", "subscription", cfg))])

**Pricing transforms** (`PricingTransform`), all built from params.yaml `steering:`:

* `subscription->api` (the paper's example): under pay-per-token pricing the *user* pays for the words, so each cell's
  user payoff drops by `price_per_100_words * expected_words[action] / 100`; `revenue_share` of that cost can be
  credited to the LLM (the provider earns what the user pays; 0 = the paper, which only charges the user).
* `api->subscription`: the provider pays, so the same cost comes off the LLM payoff.
* `published`: the additive shifts of the published code (`inference_v2.transform_payoffs`), kept for comparison:
  if `scale_llm != 0`, LLM += scale_llm on every cell and user += 0 / +1 / +0.5 for DA / AQ / CQ; else if
  `scale_user != 0`, user += scale_user on every cell and LLM += +1 / +0.5 / 0 for DA / AQ / CQ; each value rounded to
  one decimal as that code does. Its `main()` uses (0, -0.5), its `run()` (-2, -2).
* `none`: no edit.

Why expected *words per action* and not fixed constants: what a pricing change costs depends on how long each action
makes the interaction. A clarifying question is short itself but defers the answer to another turn, so its billed
words are the question plus the answer it defers (`expected_words_from_completions` computes the table from the
demonstrations; params.yaml holds the values used). Worth knowing: under the prompt's *sum* welfare a cost moved
from the user to the LLM leaves every cell's welfare unchanged, so `subscription->api` and `api->subscription` pick
the same cells (only the user/LLM tie-breaks differ); they part ways under the Nash product (`rule: nash`).

**The splice, with one prefill per answer.** The published code re-prompted (a second call with a one-line action
instruction appended to the question, the edited matrix not spliced in). Here the decoding loop is ours: the prompt
is prefilled once into the KV cache, tokens are decoded one by one, and when a row's text closes `</payoff>` the
matrix is parsed (`gtalign.protocol`), transformed, re-solved (`gtalign.game`) and rendered; the row's cache entries
from the start of the payoff content on are *masked out* (attention mask 0) and only the tokens of the replacement
text (`<payoff>` remainder + edited JSON + `</payoff>`) are fed, with position ids that continue from the kept prefix,
so the model sees exactly "prompt + kept text + edited payoff". Masking instead of `DynamicCache.crop` because crop
cuts every row of a batch at one length, while rows close their payoff at different steps; the masked entries cost a
few dozen dead cache slots per answer. Rows of a batch that do not splice in that step feed their one token
right-aligned behind mask-0 pads, so every row's last position is real; since those pads cost compute, a row that
has spliced waits up to `splice_wait` steps for the other rows still writing their payoff, and one step feeds all
the replacements. The closing run (`}}</payoff>`) is not fed as text but *token-healed*: the model spells it itself,
constrained to it, so the tokens across the end of the splice are ones it would have chosen (a standalone
tokenization can end in a token the model never saw before `<analyze>`; an SFT model then stops). A matrix the
transform leaves unchanged is not spliced at all (the model's own tokens stay), so an identity transform reproduces
plain greedy generation token for token (tested against `model.generate`).

The loop works with any Hugging Face causal LM that takes `attention_mask`, `position_ids` and a cache (`cache=` in
transformers >= 5.x, `past_key_values=` before). It does greedy or temperature/top-p sampling only: logits
processors from a model's `generation_config` (repetition penalty, top-k) are not applied.
"""

from __future__ import annotations

import inspect
import json
import math
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gtalign.game import ACTIONS, CELLS, DEFAULT_RULE, Payoff, PayoffMatrix, WelfareRule, optimal_cell, split_cell
from gtalign.protocol import (
    PayoffParseError,
    extract_block,
    named_cell,
    parse_payoff_tolerant,
    read_tolerant,
    render_payoff,
    response_action,
)

__all__ = [
    "PRICINGS",
    "PRICING_MODES",
    "Pricing",
    "PricingMode",
    "PricingTransform",
    "SteerOutput",
    "SteerRequest",
    "Steerer",
    "SteeringConfig",
    "SteeringEvalResult",
    "expected_words_from_completions",
    "published_transform",
    "steering_config",
    "steering_eval_stage",
    "transform_for",
]

PricingMode = Literal["none", "subscription->api", "api->subscription", "published"]
PRICING_MODES: tuple[str, ...] = get_args(PricingMode)
Pricing = Literal["subscription", "api"]
PRICINGS: tuple[str, ...] = get_args(Pricing)
PAYOFF_OPEN, PAYOFF_CLOSE = "<payoff>", "</payoff>"
# The published transform's per-action shifts: (user shift when the LLM pays, LLM shift when the user pays).
_PUBLISHED_SHIFTS: dict[str, tuple[float, float]] = {"DA": (0.0, 1.0), "AQ": (1.0, 0.5), "CQ": (0.5, 0.0)}


# ---------------------------------------------------------------------------------------------------------------
# Pricing transforms
# ---------------------------------------------------------------------------------------------------------------
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

    def shift(self, action: str) -> tuple[float, float]:
        """(LLM shift, user shift) this transform adds to every cell with `action` (before rounding)."""
        if self.mode == "subscription->api":
            c = self.cost(action)
            return self.revenue_share * c, -c
        if self.mode == "api->subscription":
            return -self.cost(action), 0.0
        if self.mode == "published":
            if self.scale_llm != 0:
                return self.scale_llm, _PUBLISHED_SHIFTS[action][0]
            if self.scale_user != 0:
                return _PUBLISHED_SHIFTS[action][1], self.scale_user
        return 0.0, 0.0

    def __call__(self, matrix: PayoffMatrix) -> PayoffMatrix:
        def edit(cell: str, p: Payoff) -> Payoff:
            d_llm, d_user = self.shift(split_cell(cell)[1])
            return Payoff(llm=_round1(p.llm + d_llm), user=_round1(p.user + d_user))

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


class SteeringConfig(BaseModel):
    """params.yaml `steering:` (everything but `eval:`): how pricing requests become transforms."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    native_pricing: Pricing = Field("subscription", description="the regime the policy's matrices assume")
    transform: Literal["cost", "published"] = Field("cost", description="cost: per-word cost; published: additive")
    price_per_100_words: float = Field(2.0, ge=0)
    revenue_share: float = Field(0.0, ge=0, le=1)
    expected_words: dict[str, float] = Field(default_factory=lambda: {"DA": 13.0, "CQ": 42.0, "AQ": 37.0})
    published: dict[str, dict[str, float]] = Field(
        default_factory=lambda: {
            "subscription->api": {"scale_llm": 0.0, "scale_user": -0.5},
            "api->subscription": {"scale_llm": -2.0, "scale_user": 0.0},
        }
    )
    rule: str = Field("sum", description="welfare rule used to re-solve the edited matrix (the prompt's: sum)")
    max_new_tokens: int = Field(320, ge=1)
    batch_size: int = Field(8, ge=1)

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

    def make_transform(self, mode: PricingMode) -> PricingTransform:
        """The transform for one mode; `published` uses the scales params give for the subscription->api edit."""
        if mode == "published":
            return published_transform(**self.published.get("subscription->api", {}))
        return PricingTransform(
            mode=mode,
            price_per_100_words=self.price_per_100_words,
            expected_words=self.expected_words,
            revenue_share=self.revenue_share,
        )


def steering_config(params: Mapping[str, Any]) -> SteeringConfig:
    """The `steering:` section of params.yaml as a validated config."""
    raw = dict(params.get("steering") or {})
    raw.pop("eval", None)
    return SteeringConfig(**raw)


def transform_for(pricing: Pricing | None, cfg: SteeringConfig) -> PricingTransform | None:
    """The edit that moves the policy's matrix from its native pricing to `pricing`; None when there is nothing to do.

    `cfg.transform == "published"` swaps the cost edit for the published additive shifts of the same direction.
    """
    if pricing is None or pricing == cfg.native_pricing:
        return None
    if pricing not in PRICINGS:
        raise ValueError(f"unknown pricing {pricing!r} (expected one of {', '.join(PRICINGS)})")
    direction: PricingMode = f"{cfg.native_pricing}->{pricing}"  # type: ignore[assignment]
    if cfg.transform == "published":
        return published_transform(**cfg.published.get(direction, {}))
    return cfg.make_transform(direction)


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


# ---------------------------------------------------------------------------------------------------------------
# Steered decoding
# ---------------------------------------------------------------------------------------------------------------
def _croppable(cache: Any) -> bool:
    """True for a cache whose tail can be cut: full-attention layers only (a sliding window or a recurrent state
    cannot be rolled back), `crop` present. Anything else keeps the masked dead slots, which is always correct."""
    if not callable(getattr(cache, "crop", None)) or not getattr(cache, "is_croppable", False):
        return False
    return not any(getattr(cache, "is_sliding", [True])) and not any(getattr(cache, "is_linear", []) or [])


def _closing_run_start(text: str, close_at: int) -> int:
    """Start of the punctuation run that ends at `close_at` (where `</payoff>` begins), one leading space included.

    Byte-level pre-tokenizers (GPT-2's, Qwen's) keep such a run (`}}</`) together, so the healed text starts there.
    """
    j = close_at
    while j > 0 and not (text[j - 1].isalnum() or text[j - 1].isspace()):
        j -= 1
    if j > 0 and text[j - 1] == " ":
        j -= 1
    return j


@dataclass
class SteerRequest:
    """One answer to generate. `prompt` is chat messages (the tokenizer's chat template is applied) or ready text.

    `transform=None` decodes plainly (no stop at `</payoff>`). `on_update(ids, settled)` is called after every step
    with the row's completion token ids so far; `settled` turns True once the payoff has been handled, after which
    the text only grows (streaming servers show nothing of the payoff before that). `should_stop()` ends the row
    early (a client that went away); `on_finish(output)` hands the row's output over as soon as it ends.
    """

    prompt: str | Sequence[Mapping[str, str]]
    transform: PricingTransform | None = None
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    on_update: Callable[[list[int], bool], None] | None = None
    should_stop: Callable[[], bool] | None = None
    prompt_ids: list[int] | None = None  # already tokenized `prompt` (the server counts tokens before queueing)
    on_finish: Callable[[SteerOutput], None] | None = None  # called as soon as this row ends


@dataclass(frozen=True)
class SteerOutput:
    """What one steered answer did. `original`/`edited` are None when no payoff could be read (see `steer_error`)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: Literal["stop", "length", "cancelled"]
    original: PayoffMatrix | None = None
    edited: PayoffMatrix | None = None
    original_cell: str | None = None  # welfare optimum of the model's own matrix (rule of the Steerer)
    edited_cell: str | None = None  # welfare optimum of the edited matrix
    spliced: bool = False
    steer_error: str | None = None
    fed_tokens: int = 0  # tokens fed after the prefill (decode steps plus the replacement tokens)

    @property
    def response(self) -> str | None:
        return extract_block(self.text, "response")


@dataclass(eq=False)  # rows are compared by identity
class _Row:
    req: SteerRequest
    prompt_ids: list[int]
    index: int  # row of the batch tensors
    gen: list[int] = field(default_factory=list)  # completion ids; the last one is pending (not yet fed)
    cols: list[int] = field(default_factory=list)  # cache column of each fed completion id
    pending: list[int] = field(default_factory=list)
    next_pos: int = 0
    watch: bool = False  # still waiting for </payoff>
    done: str | None = None
    generator: Any = None
    fed: int = 0
    original: PayoffMatrix | None = None
    edited: PayoffMatrix | None = None
    original_cell: str | None = None
    edited_cell: str | None = None
    spliced: bool = False
    error: str | None = None
    heal: str = ""  # text the next tokens must spell out (token healing across the splice's end)
    parked: int | None = None  # step at which a spliced row began waiting to feed its replacement
    dead_from: int | None = None  # first cache column a splice masked out (cropped away when the row is alone)


class Steerer:
    """Batched decoding with pricing steering over one KV cache; see the module docstring for the mechanism.

    Thread-compatible, not thread-safe: one `generate` at a time per instance (the server runs one worker thread).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        rule: WelfareRule = DEFAULT_RULE,
        batch_size: int = 8,
        splice_wait: int = 16,
    ) -> None:
        self.splice_wait = splice_wait
        self.model = model
        self.tokenizer = tokenizer
        self.rule = rule
        self.batch_size = batch_size
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        eos: set[int] = set()
        for source in (
            getattr(tokenizer, "eos_token_id", None),
            getattr(model.generation_config, "eos_token_id", None),
        ):
            if isinstance(source, int):
                eos.add(source)
            elif source is not None:
                eos.update(int(s) for s in source)
        self.eos_ids = frozenset(eos)
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._keep_last = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        self._close_window = max(len(PAYOFF_CLOSE), 16)
        self._vocab: dict[str, list[tuple[int, str]]] | None = None  # first char -> (id, text), for healing

    # -------------------------------------------------------------------------------------------------- public
    def prompt_ids(self, prompt: str | Sequence[Mapping[str, str]]) -> list[int]:
        """Token ids of a prompt: chat messages through the chat template (assistant turn opened), or raw text."""
        if not isinstance(prompt, str):
            from gtalign.modeling import chat_prompt

            prompt = chat_prompt(self.tokenizer, [dict(m) for m in prompt])
        return list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def generate(self, requests: Sequence[SteerRequest]) -> list[SteerOutput]:
        """One output per request, in order; requests run in batches of `batch_size` (left-padded, any lengths)."""
        import torch

        out: list[SteerOutput] = []
        self.model.eval()
        with torch.inference_mode():
            for start in range(0, len(requests), self.batch_size):
                out.extend(self._run_batch(requests[start : start + self.batch_size]))
        return out

    def select_next(self, logits: Any, rows: Sequence[_Row]) -> list[int]:
        """The next token of every row from its last-position logits (greedy, or per-row seeded top-p sampling).

        An override point: tests force scripted tokens here; constrained decoding could too.
        """
        import torch

        chosen = logits.argmax(dim=-1).tolist()
        for i, row in enumerate(rows):
            if row.done is not None or row.parked is not None:  # finished, or waiting to feed its splice
                continue
            if row.heal:
                allowed = self._healing_ids(row.heal)
                if allowed:
                    restricted = torch.full_like(logits[i], float("-inf"))
                    restricted[allowed] = logits[i, allowed]
                    logits[i] = restricted
                    chosen[i] = int(restricted.argmax())
            if row.req.temperature > 0:
                probs = torch.softmax(logits[i].float() / row.req.temperature, dim=-1)
                if row.req.top_p < 1.0:
                    sorted_p, order = probs.sort(descending=True)
                    keep = sorted_p.cumsum(0) - sorted_p < row.req.top_p  # always keeps the top token
                    probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
                chosen[i] = int(torch.multinomial(probs, 1, generator=row.generator).item())
        return chosen

    # ------------------------------------------------------------------------------------------------ internals
    def _healing_ids(self, heal: str) -> list[int]:
        """Tokens consistent with the text still to spell: a prefix of it, or a token that starts with all of it."""
        if self._vocab is None:
            special = set(getattr(self.tokenizer, "all_special_ids", []) or [])
            ids = [i for i in range(len(self.tokenizer)) if i not in special]
            index: dict[str, list[tuple[int, str]]] = defaultdict(list)
            for i, text in zip(ids, self.tokenizer.batch_decode([[i] for i in ids]), strict=True):
                if text and "\ufffd" not in text:
                    index[text[0]].append((i, text))
            self._vocab = dict(index)
        return [i for i, t in self._vocab.get(heal[0], ()) if heal.startswith(t) or t.startswith(heal)]

    def _forward(self, input_ids: Any, mask: Any, positions: Any, cache: Any) -> tuple[Any, Any]:
        kwargs = {self._cache_kw: cache} if cache is not None else {}
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **kwargs,
            **self._keep_last,
        )
        new_cache = getattr(out, "cache", None)
        if new_cache is None:
            new_cache = getattr(out, "past_key_values", None)
        return out.logits[:, -1, :], new_cache

    def _run_batch(self, requests: Sequence[SteerRequest]) -> list[SteerOutput]:
        import torch

        device = self.model.device
        rows = [
            _Row(req=r, prompt_ids=r.prompt_ids if r.prompt_ids is not None else self.prompt_ids(r.prompt), index=i)
            for i, r in enumerate(requests)
        ]
        for row in rows:
            row.next_pos = len(row.prompt_ids)
            row.watch = row.req.transform is not None and not row.req.transform.is_identity
            if row.req.temperature > 0:
                row.generator = torch.Generator(device=device).manual_seed(
                    row.req.seed if row.req.seed is not None else 0
                )
        width = max(len(r.prompt_ids) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row.prompt_ids)
            ids[i, width - n :] = torch.tensor(row.prompt_ids, dtype=torch.long)
            mask[i, width - n :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        mask = mask.to(device)
        logits, cache = self._forward(ids.to(device), mask, positions.to(device), None)  # the one prefill
        cache_len, step = width, 0
        fed_now = rows
        while True:
            tokens = self.select_next(logits, rows)
            for row, token in zip(rows, tokens, strict=True):
                if row.done is None and row in fed_now:  # parked rows have no fresh logits
                    self._advance(row, token, mask)
                    if row.spliced and row.parked is None and len(row.pending) > 1:
                        row.parked = step
            active = [r for r in rows if r.done is None]
            if not active:
                break
            if len(rows) == 1 and rows[0].dead_from is not None and _croppable(cache):
                # Alone in its batch, the row's masked payoff is the tail of the cache: crop it (DynamicCache.crop)
                # so that later steps attend over no dead slots and the mask stays hole-free.
                cache.crop(rows[0].dead_from - cache_len)  # negative: the number of tokens to remove
                mask, cache_len = mask[:, : rows[0].dead_from], rows[0].dead_from
            for row in rows:
                row.dead_from = None
            fed_now = self._feeding(active, step)
            k = max(len(r.pending) for r in fed_now)
            step_ids = torch.full((len(rows), k), self.pad_id, dtype=torch.long)
            step_mask = torch.zeros((len(rows), k), dtype=torch.long)
            step_pos = torch.zeros((len(rows), k), dtype=torch.long)
            for i, row in enumerate(rows):
                if row not in fed_now:
                    step_pos[i, :] = row.next_pos
                    continue
                n, offset = len(row.pending), k - len(row.pending)
                step_ids[i, offset:] = torch.tensor(row.pending, dtype=torch.long)
                step_mask[i, offset:] = 1
                step_pos[i, :offset] = row.next_pos  # pads: any position, they are masked
                step_pos[i, offset:] = torch.arange(row.next_pos, row.next_pos + n)
                row.cols.extend(range(cache_len + offset, cache_len + k))
                row.next_pos += n
                row.fed += n
                row.pending, row.parked = [], None
            mask = torch.cat([mask, step_mask.to(device)], dim=1)
            logits, cache = self._forward(step_ids.to(device), mask, step_pos.to(device), cache)
            cache_len += k
            step += 1
        return [self._output(r) for r in rows]

    def _feeding(self, active: list[_Row], step: int) -> list[_Row]:
        """The rows fed this step. A row that just spliced waits (up to `splice_wait` steps) for the other rows that
        may still close a payoff, so that one multi-token step feeds all their replacements: every multi-token step
        costs batch x replacement positions, since the other rows ride along as masked pads."""
        parked = [r for r in active if r.parked is not None]
        if not parked:
            return active
        watching = any(r.watch for r in active)
        if not watching or len(parked) == len(active) or step - min(r.parked for r in parked) >= self.splice_wait:
            return active
        return [r for r in active if r.parked is None]

    def _advance(self, row: _Row, token: int, mask: Any) -> None:
        """Append the chosen token; handle EOS, a closed payoff (maybe splicing), the budget and cancellation."""
        row.gen.append(token)
        if row.heal:
            spelled = self.tokenizer.decode([token])
            row.heal = row.heal[len(spelled) :] if row.heal.startswith(spelled) else ""
        if token in self.eos_ids:
            row.done = "stop"
        else:
            row.pending = [token]
            if row.watch and PAYOFF_CLOSE in self.tokenizer.decode(row.gen[-self._close_window :]):
                self._settle(row, mask)
            if len(row.gen) >= row.req.max_new_tokens:
                row.done = "length"
            elif row.req.should_stop is not None and row.req.should_stop():
                row.done = "cancelled"
        if row.req.on_update is not None:
            row.req.on_update(list(row.gen), not row.watch)
        if row.done is not None and row.req.on_finish is not None:
            row.req.on_finish(self._output(row))  # a short answer need not wait for the rest of its batch

    def _settle(self, row: _Row, mask: Any) -> None:
        """The row just closed its first payoff block: parse, transform, re-solve and, if it changed, splice."""
        row.watch = False
        decode = self.tokenizer.decode
        text = decode(row.gen, skip_special_tokens=False)
        close = text.find(PAYOFF_CLOSE)
        start = text.find(PAYOFF_OPEN)
        if start < 0 or start > close:
            row.error = "no <payoff> before </payoff>"
            return
        content_start = start + len(PAYOFF_OPEN)
        content = text[content_start:close]
        try:
            data = parse_payoff_tolerant(content)
            matrix = PayoffMatrix.from_dict({c: {k: float(v) for k, v in data[c].items()} for c in CELLS})
        except (PayoffParseError, ValueError, TypeError, OverflowError) as e:
            row.error = f"payoff: {e}"
            return
        assert row.req.transform is not None
        edited = row.req.transform(matrix)
        row.original, row.edited = matrix, edited
        row.original_cell, row.edited_cell = self._optimum(matrix), self._optimum(edited)
        if edited == matrix:
            return
        # Keep the longest token prefix whose text ends at or before the payoff content; re-feed the rest as text.
        keep = len(row.gen) - 1
        while keep > 0:
            kept = decode(row.gen[:keep], skip_special_tokens=False)
            if len(kept) <= content_start and text.startswith(kept):
                break
            keep -= 1
        kept_len = len(decode(row.gen[:keep], skip_special_tokens=False)) if keep else 0
        lead = content[: len(content) - len(content.lstrip())]
        trail = content[len(content.rstrip()) :]
        replacement = text[kept_len:content_start] + lead + render_payoff(edited) + trail + PAYOFF_CLOSE
        # Token healing: the closing run ("}}</payoff>") is not fed as text; the model spells it itself, constrained
        # to it, so that the tokens across the splice's end are ones it would choose (a standalone tokenization of
        # "...}}</payoff>" ends in tokens the model never saw before "<analyze>", and an SFT model may stop there).
        heal_from = _closing_run_start(replacement, len(replacement) - len(PAYOFF_CLOSE))
        new_ids = list(self.tokenizer(replacement[:heal_from], add_special_tokens=False)["input_ids"])
        dead = row.cols[keep:]
        if dead:
            mask[row.index, dead] = 0  # the model's own payoff tokens stay in the cache but are never attended
            row.dead_from = dead[0]
        row.cols = row.cols[:keep]
        row.gen = row.gen[:keep] + new_ids
        row.pending = new_ids
        row.next_pos = len(row.prompt_ids) + keep
        row.heal = replacement[heal_from:]
        row.spliced = True

    def _optimum(self, matrix: PayoffMatrix) -> str | None:
        try:
            return optimal_cell(matrix, self.rule)
        except ValueError:  # e.g. cobb_douglas on negative payoffs: no optimum under that rule
            return None

    def _output(self, row: _Row) -> SteerOutput:
        return SteerOutput(
            text=self.tokenizer.decode(row.gen, skip_special_tokens=True),
            prompt_tokens=len(row.prompt_ids),
            completion_tokens=len(row.gen),
            finish_reason=row.done or "length",  # type: ignore[arg-type]
            original=row.original,
            edited=row.edited,
            original_cell=row.original_cell,
            edited_cell=row.edited_cell,
            spliced=row.spliced,
            steer_error=row.error if row.req.transform is not None else None,
            fed_tokens=row.fed,
        )


# ---------------------------------------------------------------------------------------------------------------
# Evaluation: `gtalign steer eval`
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class SteeringEvalResult:
    """The steering evaluation: a markdown section for the report, flat metrics, per-answer records."""

    markdown: str
    metrics: dict[str, float]
    records: list[dict[str, Any]]
    paths: dict[str, Path]
    run_id: str | None = None


def _words(text: str | None) -> int:
    return len((text or "").split())


def _timed_generate(steerer: Steerer, requests: list[SteerRequest]) -> tuple[list[SteerOutput], float]:
    start = time.perf_counter()
    outs = steerer.generate(requests)
    return outs, time.perf_counter() - start


def _time_pair(
    steerer: Steerer, prompts: list[Any], transform: PricingTransform, max_new: int, repeats: int
) -> dict[str, float]:
    """Best-of-`repeats` wall time of the same prompts unsteered and steered, interleaved (A B A B ...) so that a
    change in the machine's load hits both alike; also per completion token, since steering changes lengths."""
    best = {"unsteered": (math.inf, 1), "steered": (math.inf, 1)}
    for _ in range(max(1, repeats)):
        for name, t in (("unsteered", None), ("steered", transform)):
            outs, secs = _timed_generate(
                steerer, [SteerRequest(p, transform=t, max_new_tokens=max_new) for p in prompts]
            )
            best[name] = min(best[name], (secs, max(1, sum(o.completion_tokens for o in outs))))
    (u_s, u_n), (s_s, s_n) = best["unsteered"], best["steered"]
    return {
        "unsteered_s": u_s,
        "steered_s": s_s,
        "ratio": s_s / u_s,
        "ratio_per_token": (s_s / s_n) / (u_s / u_n),
        "prompts": float(len(prompts)),
    }


def _eval_modes(cfg: SteeringConfig, modes: Sequence[str], prices: Sequence[float]) -> list[tuple[str, Any]]:
    """(label, transform) pairs: each cost mode at each price, `published` once."""
    out: list[tuple[str, PricingTransform]] = []
    for mode in modes:
        if mode not in PRICING_MODES or mode == "none":
            raise ValueError(f"steering.eval.modes: unknown mode {mode!r} (expected {', '.join(PRICING_MODES[1:])})")
        if mode == "published":
            out.append((mode, cfg.make_transform("published")))
            continue
        for price in prices:
            scaled = cfg.model_copy(update={"price_per_100_words": float(price)})
            out.append((f"{mode} @{price:g}", scaled.make_transform(mode)))  # type: ignore[arg-type]
    return out


def steering_eval_stage(
    root: Path,
    params: Mapping[str, Any],
    *,
    model: str | None = None,
    per_source: int | None = None,
    out_dir: Path | None = None,
    tracking_uri: str | None = None,
    track: bool = True,
) -> SteeringEvalResult:
    """Steer held-out prompts under every pricing mode and compare with the unsteered answers of the same model.

    Curated test rows, `per_source` per source (seeded), compact prompts, greedy. Reported per source and mode: how
    often the matrix optimum's action changes (intended) and the response's action changes (realised) and in which
    direction, whether the steered answer follows its edited matrix exactly (`matrix_consistency`, both analyze and
    response), the change in response words and in welfare (`score_batch`, rule judge), and the wall time of the
    steered run against the unsteered one (also per completion token, since steering changes answer lengths).
    """
    from gtalign.config import reward_config, section
    from gtalign.data import load_curated
    from gtalign.data.prompts import extra_info_of, prompt_messages
    from gtalign.layout import Layout
    from gtalign.modeling import load_model
    from gtalign.reward import RewardInput, score_batch
    from gtalign.reward.consistency import matrix_consistency
    from gtalign.reward.judges import make_judge
    from gtalign.serve import resolve_model

    root = Path(root)
    params = dict(params)
    layout = Layout(root)
    cfg = steering_config(params)
    ev = dict(section(section(params, "steering"), "eval"))
    per_source = int(per_source if per_source is not None else ev.get("per_source", 10))
    seed = int(ev.get("seed", 0))
    model_ref = model or str(ev.get("model") or "")
    if not model_ref:
        raise ValueError("steering eval needs a model: --model PATH|models:/NAME@ALIAS (or steering.eval.model)")
    modes = _eval_modes(
        cfg,
        list(ev.get("modes", ["subscription->api", "api->subscription", "published"])),
        list(ev.get("prices", [cfg.price_per_100_words])),
    )
    out_dir = Path(out_dir) if out_dir else layout.artifacts / "steering"

    table = load_curated(layout.curated)
    test = table[table["split"] == "test"]
    sample = test.sample(frac=1.0, random_state=seed).groupby("source").head(per_source)
    rows = sample.sort_values(["source", "uid"], kind="stable").to_dict("records")
    if not rows:
        raise ValueError(f"{layout.curated}: no test rows to steer")
    prompts = [prompt_messages(r, "compact") for r in rows]
    sources = [str(r["source"]) for r in rows]

    model_dir = resolve_model(model_ref, root=root, tracking_uri=tracking_uri)
    lm, tokenizer = load_model(model_dir, device=ev.get("device"))
    steerer = Steerer(lm, tokenizer, rule=cfg.welfare_rule, batch_size=cfg.batch_size)
    max_new = cfg.max_new_tokens
    steerer.generate([SteerRequest(prompts[0], max_new_tokens=4)])  # warm-up: first-call costs are not steering's

    reward = section(params, "reward")
    judge = make_judge("rule", **dict(section(reward, "judge").get("rule") or {}))
    rcfg = reward_config(params)

    def score(outs: list[SteerOutput]) -> list[Any]:
        inputs = [
            RewardInput(o.text, str(r["source"]), str(r["ground_truth"]), extra_info_of(r))
            for o, r in zip(outs, rows, strict=True)
        ]
        return score_batch(inputs, judge, rcfg)

    base, _ = _timed_generate(steerer, [SteerRequest(p, max_new_tokens=max_new) for p in prompts])
    base_scores = score(base)
    records: list[dict[str, Any]] = []
    timing: dict[str, dict[str, float]] = {}
    timed = prompts[: int(ev.get("timing_prompts", 8))]
    for label, transform in modes:
        outs, _ = _timed_generate(
            steerer, [SteerRequest(p, transform=transform, max_new_tokens=max_new) for p in prompts]
        )
        timing[label] = _time_pair(steerer, timed, transform, max_new, int(ev.get("timing_repeats", 3)))
        for r, b, o, bs, ss in zip(rows, base, outs, base_scores, score(outs), strict=True):
            reading = read_tolerant(o.text)
            cons = matrix_consistency(reading, cfg.welfare_rule)
            records.append(
                {
                    "uid": r["uid"],
                    "source": str(r["source"]),
                    "mode": label,
                    "payoff_read": o.original is not None,
                    "spliced": o.spliced,
                    "steer_error": o.steer_error,
                    "original_cell": o.original_cell,
                    "edited_cell": o.edited_cell,
                    "intended_from": split_cell(o.original_cell)[1] if o.original_cell else None,
                    "intended_to": split_cell(o.edited_cell)[1] if o.edited_cell else None,
                    "base_action": response_action(b.response),
                    "steered_action": response_action(o.response),
                    "named_cell": named_cell(reading.analyze),
                    "follows_analyze": cons.analyze_ok,
                    "follows_response": cons.response_ok,
                    "base_words": _words(b.response),
                    "steered_words": _words(o.response),
                    "base_tokens": b.completion_tokens,
                    "steered_tokens": o.completion_tokens,
                    "base_welfare": bs.score,
                    "steered_welfare": ss.score,
                    "edited_payoff": o.edited.to_dict() if o.edited else None,
                }
            )
    metrics, markdown = _summarize_eval(records, timing, modes, sources, model_ref, cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "report": out_dir / "report.md",
        "records": out_dir / "records.jsonl",
        "metrics": layout.metrics("steering"),
    }
    paths["report"].write_text(markdown, encoding="utf-8")
    with paths["records"].open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")
    paths["metrics"].parent.mkdir(parents=True, exist_ok=True)
    paths["metrics"].write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    run_id = None
    if track:
        import mlflow

        from gtalign import tracking

        run_params = _mlflow_keys(
            {
                "steering": {**cfg.model_dump(mode="json"), "eval": {**ev, "per_source": per_source}},
                "model": model_ref,
            }
        )
        with tracking.run(root, "steering_eval", params=run_params, tracking_uri=tracking_uri) as active:
            mlflow.log_metrics({_metric_key(k): v for k, v in metrics.items() if math.isfinite(v)})
            for path in paths.values():
                mlflow.log_artifact(str(path))
            run_id = active.info.run_id
    return SteeringEvalResult(markdown, metrics, records, paths, run_id)


def _metric_key(key: str) -> str:
    """MLflow metric names allow alphanumerics, `_-./ ` only: `subscription->api @2` -> `subscription_to_api_2`."""
    return key.replace("->", "_to_").replace(" @", "_").replace("@", "_")


def _mlflow_keys(value: Any) -> Any:
    """Nested params with every key made MLflow-safe (`subscription->api` -> `subscription_to_api`)."""
    if isinstance(value, Mapping):
        return {_metric_key(str(k)): _mlflow_keys(v) for k, v in value.items()}
    return value


def _mean(values: Iterable[float | None]) -> float:
    vals = [float(v) for v in values if v is not None]
    return statistics.fmean(vals) if vals else float("nan")


def _summarize_eval(
    records: list[dict[str, Any]],
    timing: Mapping[str, Mapping[str, float]],
    modes: Sequence[tuple[str, PricingTransform]],
    sources: Sequence[str],
    model_ref: str,
    cfg: SteeringConfig,
) -> tuple[dict[str, float], str]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        groups[(rec["mode"], rec["source"])].append(rec)
        groups[(rec["mode"], "all")].append(rec)
    metrics: dict[str, float] = {}
    lines = [
        "## Pricing steering",
        "",
        f"Model `{model_ref}`; {len(set(sources))} sources, {len(sources)} held-out prompts (compact prompt, greedy); "
        f"the edited matrix is re-solved with the `{cfg.rule}` rule and spliced into the answer at `</payoff>` "
        "(one prefill per answer, KV cache kept). Expected billed words per action: "
        + ", ".join(f"{a} {cfg.expected_words[a]:g}" for a in ACTIONS)
        + ". Transforms: "
        + "; ".join(f"`{label}` = {t.describe()}" for label, t in modes)
        + ".",
        "",
        "*read* = the payoff parsed; *intended* = the optimum's action changed with the edit; *realised* = the "
        "response's action differs from the unsteered answer's; *follows* = analyze and response both act on the "
        "edited matrix's optimum (exact); deltas are steered minus unsteered (response words; welfare = reward score, "
        "rule judge).",
        "",
        "| mode | source | n | read | spliced | intended | realised | transitions (realised) | follows | "
        "Δ words | Δ welfare |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, _ in modes:
        for source in [*sorted(set(sources)), "all"]:
            recs = groups.get((label, source), [])
            if not recs:
                continue
            n = len(recs)
            intended = [r for r in recs if r["intended_from"] and r["intended_from"] != r["intended_to"]]
            realised = [r for r in recs if r["base_action"] != r["steered_action"]]
            moves = Counter(f"{r['base_action']}->{r['steered_action']}" for r in realised)
            m = {
                "n": float(n),
                "read": sum(r["payoff_read"] for r in recs) / n,
                "spliced": sum(r["spliced"] for r in recs) / n,
                "intended_change": len(intended) / n,
                "realised_change": len(realised) / n,
                "follows": sum(r["follows_analyze"] and r["follows_response"] for r in recs) / n,
                "follows_response": sum(r["follows_response"] for r in recs) / n,
                "delta_words": _mean(r["steered_words"] - r["base_words"] for r in recs),
                "delta_welfare": _mean(
                    r["steered_welfare"] - r["base_welfare"]
                    for r in recs
                    if r["steered_welfare"] is not None and r["base_welfare"] is not None
                ),
            }
            metrics.update({f"{label}/{source}/{k}": v for k, v in m.items()})
            metrics.update({f"{label}/{source}/move/{k}": float(v) for k, v in moves.items()})
            move_text = ", ".join(f"{k} {v}" for k, v in moves.most_common()) or "-"
            lines.append(
                f"| {label} | {source} | {n} | {m['read']:.0%} | {m['spliced']:.0%} | {m['intended_change']:.0%} | "
                f"{m['realised_change']:.0%} | {move_text} | {m['follows']:.0%} | {m['delta_words']:+.1f} | "
                f"{m['delta_welfare']:+.3f} |"
            )
    lines += [
        "",
        "Time: the first prompts of the set, unsteered and steered runs interleaved, best of the repeats (the machine "
        "is shared), batched as in the evaluation.",
        "",
        "| mode | prompts | unsteered s | steered s | ratio | ratio per token |",
        "|---|---|---|---|---|---|",
    ]
    for label, t in timing.items():
        metrics.update({f"{label}/time/{k}": float(v) for k, v in t.items()})
        lines.append(
            f"| {label} | {t['prompts']:.0f} | {t['unsteered_s']:.2f} | {t['steered_s']:.2f} | {t['ratio']:.3f} | "
            f"{t['ratio_per_token']:.3f} |"
        )
    lines += ["", "Target: steered / unsteered time <= 1.15.", ""]
    return metrics, "\n".join(lines)
