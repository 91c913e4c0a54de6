"""The splice decoder: greedy or sampled decoding that stops at `</payoff>`, edits the matrix and goes on.

**One prefill per answer.** The published code re-prompted (a second call with a one-line action instruction appended
to the question, the edited matrix not spliced in). Here the decoding loop is ours: the prompt is prefilled once into
the KV cache, tokens are decoded one by one, and when a row's text closes `</payoff>` the matrix is parsed
(`gtalign.protocol`), transformed (`gtalign.steering.pricing`), re-solved (`gtalign.game`) and rendered; the row's
cache entries from the start of the payoff content on are *masked out* (attention mask 0) and only the tokens of the
replacement text (`<payoff>` remainder + edited JSON + `</payoff>`) are fed, with position ids that continue from the
kept prefix, so the model sees exactly "prompt + kept text + edited payoff". Masking instead of `DynamicCache.crop`
because crop cuts every row of a batch at one length, while rows close their payoff at different steps. The masked
entries are then *compacted away* before the replacements are fed (`_compact`): each row's cache columns are
reordered, masked ones first, and the columns every row has masked are cut, so the rest of the answer attends over
no dead slots (about 130 per answer, a third more cache: the slower steps after a splice were most of steering's
time overhead on a CPU). The order of cache columns is free because the keys are stored after the rotary embedding
and positions travel as position ids. Only a cache of plain full-attention `DynamicLayer`s is compacted; any other
keeps its dead slots masked, which is always correct. Rows of a batch that do not splice in that step feed their one
token right-aligned behind mask-0 pads, so every row's last position is real; since those pads cost compute, a row
that has spliced waits up to `splice_wait` steps for the other rows still writing their payoff, and one step feeds
all the replacements. The closing run (`}}</payoff>`) is not fed as text but *token-healed*: the model spells it
itself, constrained to it, so the tokens across the end of the splice are ones it would have chosen (a standalone
tokenization can end in a token the model never saw before `<analyze>`; an SFT model then stops). A replacement
that ends in one of the tokenizer's added tokens (the tiny tokenizer holds `</payoff>` and `<response>` whole) is fed
whole instead: nothing after an added token is glued to it, so there is nothing to heal. A matrix the
transform leaves unchanged is not spliced at all (the model's own tokens stay), so an identity transform reproduces
plain greedy generation token for token (tested against `model.generate`).

**An exact solver in the loop** (`SteerRequest.analyze="solver"`): the row stops at `</payoff>` whether or not it
has a transform, and the splice runs on through the analysis: the (edited) matrix (re-rendered by `render_payoff`
even when unchanged, so the model's own payoff tokens are replaced), `</payoff><analyze>`, the text
`gtalign.protocol.render_analyze` writes for it (the rule teacher's own writer, so it is the analysis the policy
was trained on), `</analyze><response>`, laid out as `render_completion` lays a completion out. The model then
writes only the response. This splice is fed as text up to `<response`; its last `>` is token-healed (the byte-level
pre-tokenizers of GPT-2 and Qwen keep `>` together with the first letters of the response, `>The`, so the model
spells `>` plus whatever it would have glued to it). A matrix that cannot be read leaves the row unspliced with
`steer_error` set; so does a rule with no optimum on the edited matrix (the model then writes the analysis, on the
edited matrix if the transform changed it), and a solver row that ends without closing its payoff. Every solver
row watches for `</payoff>`, so a row that spliced may wait up to `splice_wait` steps for any row that has not
closed its payoff yet (not only for rows with a transform, as in model mode). In either mode a splice never takes
an answer past `max_new_tokens`: one that would (a long analysis near the budget) ends the answer there, `length`.

The loop works with any Hugging Face causal LM that takes `attention_mask`, `position_ids` and a cache (`cache=` in
transformers >= 5.x, `past_key_values=` before). It does greedy or temperature/top-p sampling only: logits
processors from a model's `generation_config` (repetition penalty, top-k) are not applied.
"""

from __future__ import annotations

import bisect
import inspect
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from gtalign.game import CELLS, DEFAULT_RULE, PayoffMatrix, WelfareRule, optimal_cell
from gtalign.modeling import chat_prompt
from gtalign.protocol import (
    PayoffParseError,
    extract_block,
    parse_payoff_tolerant,
    render_analyze,
    render_payoff,
    render_through_analyze,
)
from gtalign.steering.pricing import PricingTransform

__all__ = ["ANALYZE_MODES", "PAYOFF_CLOSE", "PAYOFF_OPEN", "AnalyzeMode", "SteerOutput", "SteerRequest", "Steerer"]

PAYOFF_OPEN, PAYOFF_CLOSE = "<payoff>", "</payoff>"
AnalyzeMode = Literal["model", "solver"]
ANALYZE_MODES: tuple[AnalyzeMode, ...] = ("model", "solver")


def _compactable(cache: Any) -> bool:
    """True for a cache whose columns can be reordered and cut per row: transformers' `DynamicCache` of plain
    full-attention `DynamicLayer`s, not offloaded (a sliding window, a recurrent state or a quantized cache cannot
    be). Anything else keeps the masked dead slots, which is always correct."""
    from transformers.cache_utils import DynamicLayer  # transformers loads with torch, at the first generation

    layers = getattr(cache, "layers", None)
    if not layers or getattr(cache, "offloading", False) or not getattr(cache, "is_croppable", False):
        return False
    return all(type(layer) is DynamicLayer and layer.is_initialized and layer.keys.dim() == 4 for layer in layers)


def _compact(cache: Any, mask: Any, rows: Sequence[_Row]) -> Any:
    """Reorder every row's cache columns, masked ones first (live ones in their order), cut the columns every row
    has masked, and return the mask that goes with the result; fed columns in `rows` are renumbered to match.

    Attention sees the same live keys at the same positions (keys carry their rotary embedding, queries their
    position ids), over fewer dead ones; the layout is a left-padded batch again, as after the prefill.
    """
    import torch

    cut = int((mask == 0).sum(dim=1).min())
    if cut == 0:  # some row has no masked column: nothing to cut
        return mask
    order = torch.sort(mask, dim=1, stable=True).indices  # 0s (masked) first; a stable sort keeps the live order
    keep = order[:, cut:]
    for layer in cache.layers:
        index = keep[:, None, :, None].expand(-1, layer.keys.shape[1], -1, layer.keys.shape[3])
        layer.keys, layer.values = layer.keys.gather(2, index), layer.values.gather(2, index)
    moved = (order.argsort(dim=1) - cut).tolist()  # old column -> new column, per row
    for row in rows:
        row.cols = [moved[row.index][c] for c in row.cols]
    return mask.gather(1, keep)


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

    `transform=None` decodes plainly (no stop at `</payoff>`) unless `analyze="solver"`: then the row stops at
    `</payoff>` and the solver writes `<analyze>` (module docstring). `on_update(ids, settled)` is called after
    every step with the row's completion token ids so far; `settled` turns True once the payoff has been handled,
    after which the text only grows (streaming servers show nothing of the payoff before that). `should_stop()`
    ends the row early (a client that went away); `on_finish(output)` hands the row's output over as soon as it ends.
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
    analyze: AnalyzeMode = "model"  # who writes <analyze>: the model, or the solver (spliced with the payoff)

    def __post_init__(self) -> None:
        if self.analyze not in ANALYZE_MODES:
            raise ValueError(f"SteerRequest.analyze: {self.analyze!r} is not one of {', '.join(ANALYZE_MODES)}")


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
    analyze_mode: AnalyzeMode = "model"  # what the request asked for
    solver_analyze: bool = False  # the solver wrote <analyze> (spliced); False when it could not (see steer_error)

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
    solver_analyze: bool = False
    error: str | None = None
    heal: str = ""  # text the next tokens must spell out (token healing across the splice's end)
    parked: int | None = None  # step at which a spliced row began waiting to feed its replacement


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
        self._whole = tuple(tokenizer.get_added_vocab())  # texts the tokenizer cuts out before pre-tokenizing

    # -------------------------------------------------------------------------------------------------- public
    def prompt_ids(self, prompt: str | Sequence[Mapping[str, str]]) -> list[int]:
        """Token ids of a prompt: chat messages through the chat template (assistant turn opened), or raw text."""
        if not isinstance(prompt, str):
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
            row.watch = row.req.analyze == "solver" or (
                row.req.transform is not None and not row.req.transform.is_identity
            )
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
        step, fed_now = 0, rows
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
            fed_now = self._feeding(active, step)
            if any(len(r.pending) > 1 for r in fed_now) and _compactable(cache):
                # replacements go in now (only a splice leaves more than one token pending): first cut the dead
                # slots of every splice since the last feed
                mask = _compact(cache, mask, rows)
            k, cache_len = max(len(r.pending) for r in fed_now), mask.shape[1]
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
            if (
                row.watch
                and self._may_close(token)
                and PAYOFF_CLOSE in self.tokenizer.decode(row.gen[-self._close_window :])
            ):
                self._settle(row, mask)
            if len(row.gen) >= row.req.max_new_tokens:
                row.done = "length"
            elif row.req.should_stop is not None and row.req.should_stop():
                row.done = "cancelled"
        if row.req.on_update is not None:
            row.req.on_update(list(row.gen), not row.watch)
        if row.done is not None and row.req.on_finish is not None:
            row.req.on_finish(self._output(row))  # a short answer need not wait for the rest of its batch

    def _may_close(self, token: int) -> bool:
        """Whether `token` can end `</payoff>`: its text holds a `>` (a vocabulary lookup, not a decode, on every
        step of every watching row)."""
        return ">" in (self.tokenizer.convert_ids_to_tokens(token) or "")

    def _settle(self, row: _Row, mask: Any) -> None:
        """The row just closed its first payoff block: parse, transform, re-solve and, if it changed or the solver
        writes the analysis, splice."""
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
        edited = row.req.transform(matrix) if row.req.transform is not None else matrix
        row.original, row.edited = matrix, edited
        row.original_cell, row.edited_cell = self._optimum(matrix), self._optimum(edited)
        analysis = None
        if row.req.analyze == "solver":
            try:
                analysis = render_analyze(edited, self.rule)
            except ValueError as e:  # no optimum under the rule (cobb_douglas on a negative payoff): the model writes
                row.error = f"analyze: {e}"
        if analysis is None and edited == matrix:
            return
        # Keep the longest token prefix whose text ends at or before the payoff content; re-feed the rest as text.
        # A prefix's text only grows with it, so bisect on its length, then step back past a split character.
        keep = (
            bisect.bisect_right(
                range(len(row.gen)), content_start, key=lambda k: len(decode(row.gen[:k], skip_special_tokens=False))
            )
            - 1
        )
        while keep > 0 and not text.startswith(decode(row.gen[:keep], skip_special_tokens=False)):
            keep -= 1
        kept_len = len(decode(row.gen[:keep], skip_special_tokens=False)) if keep else 0
        if analysis is not None:
            # The solver's text, laid out as in training, fed up to "<response"; the final ">" is healed: the
            # pre-tokenizer glues it to the response's first letters (">The"), so the model spells it.
            replacement = text[kept_len:content_start] + render_through_analyze(edited, analysis)
            heal_from = self._heal_from(replacement, len(replacement))
            row.solver_analyze = True
        else:
            lead = content[: len(content) - len(content.lstrip())]
            trail = content[len(content.rstrip()) :]
            replacement = text[kept_len:content_start] + lead + render_payoff(edited) + trail + PAYOFF_CLOSE
            # Token healing: the closing run ("}}</payoff>") is not fed as text; the model spells it itself,
            # constrained to it, so that the tokens across the splice's end are ones it would choose (a standalone
            # tokenization of "...}}</payoff>" ends in tokens the model never saw before "<analyze>", and an SFT
            # model may stop there).
            heal_from = self._heal_from(replacement, len(replacement) - len(PAYOFF_CLOSE))
        new_ids = list(self.tokenizer(replacement[:heal_from], add_special_tokens=False)["input_ids"])
        mask[row.index, row.cols[keep:]] = 0  # the model's own payoff tokens stay in the cache but are never attended
        row.cols = row.cols[:keep]
        row.gen = row.gen[:keep] + new_ids
        row.pending = new_ids
        row.next_pos = len(row.prompt_ids) + keep
        row.heal = replacement[heal_from:]
        row.spliced = True
        if len(row.gen) > row.req.max_new_tokens:  # the splice ran past the budget (a solver's analysis is long):
            row.gen, row.heal = row.gen[: row.req.max_new_tokens], ""  # the answer ends there, `length`

    def _heal_from(self, replacement: str, run_end: int) -> int:
        """Where the token-healed tail of a splice starts: the punctuation run ending at `run_end`, or nowhere (the
        whole replacement is fed) when it ends in one of the tokenizer's added tokens: those are cut out before
        pre-tokenizing, so nothing that follows is glued to them and the standalone tokens are the model's own (the
        tiny tokenizer holds `</payoff>` and `<response>` whole: `gtalign.protocol.fixed_strings`)."""
        return len(replacement) if replacement.endswith(self._whole) else _closing_run_start(replacement, run_end)

    def _optimum(self, matrix: PayoffMatrix) -> str | None:
        try:
            return optimal_cell(matrix, self.rule)
        except ValueError:  # e.g. cobb_douglas on negative payoffs: no optimum under that rule
            return None

    def _output(self, row: _Row) -> SteerOutput:
        error = row.error
        if row.watch and row.req.analyze == "solver":  # ended (length, stop, cancelled) before closing its payoff
            error = f"no {PAYOFF_CLOSE} before the answer ended ({row.done or 'length'}): the solver wrote nothing"
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
            steer_error=error,
            fed_tokens=row.fed,
            analyze_mode=row.req.analyze,
            solver_analyze=row.solver_analyze,
        )
