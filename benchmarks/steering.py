"""Benchmark: the time overhead of pricing steering (splice at `</payoff>`, KV cache kept) over plain decoding.

`bench_steering(tmp)` returns a markdown section for BENCHMARKS.md (`make bench` registers it). Run alone with
`python benchmarks/steering.py`.

Method. The project's tiny Qwen2 architecture (`TinyModelConfig`, weights seeded, tokenizer trained on the
demonstrations) answers compact prompts of the curated demonstrations. To make the work identical with and without
steering, every answer is *forced* to start with that row's own demonstration up to `</payoff>` and then decodes
freely with EOS suppressed, for the same number of completion tokens in all three runs (the longest prefix plus
`after_payoff`):

* unsteered: plain decoding (the same loop, no transform);
* steered: the API-pricing transform edits every matrix, the payoff is spliced in (its tokens masked, the edited
  JSON fed in one step, the closing run token-healed) and decoding continues from the kept cache;
* re-prompted: what the published code does instead, a second call: the prompt plus the edited prefix is prefilled
  again from scratch and decoding continues.

Each run is timed `repeats` times, interleaved; the table gives the best time (the least disturbed by other load
on the machine) and the ratio to unsteered. The target is steered / unsteered <= 1.15.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _forced_steerer_class():
    import torch

    from gtalign.steering import Steerer

    class Forced(Steerer):
        """Forces each row's scripted prefix until its payoff closes, then decodes greedily with EOS suppressed."""

        def select_next(self, logits, rows):
            logits[:, sorted(self.eos_ids)] = float("-inf")
            chosen = super().select_next(logits, rows)
            for i, row in enumerate(rows):
                prefix = getattr(row.req, "forced", ())  # set on each SteerRequest by the benchmark
                if row.done is None and not row.spliced and len(row.gen) < len(prefix):
                    chosen[i] = prefix[len(row.gen)]
            return chosen

    return Forced, torch


def bench_steering(
    tmp: Path,
    n_prompts: int = 8,
    after_payoff: int = 96,
    repeats: int = 3,
    threads: int = 1,
    device: str = "cpu",
    model_config: dict | None = None,
) -> str:
    from gtalign.game import PayoffMatrix
    from gtalign.modeling import TinyModelConfig, build_tiny_model, chat_prompt, train_tokenizer
    from gtalign.protocol import extract_block, parse_payoff_tolerant, render_payoff
    from gtalign.steering import PricingTransform, SteerRequest

    Forced, torch = _forced_steerer_class()
    torch.set_num_threads(threads)
    rows = [json.loads(line) for line in (ROOT / "artifacts/demonstrations/demonstrations.jsonl").open()]
    picked = rows[:: max(1, len(rows) // n_prompts)][:n_prompts]
    texts = [r["prompt"][-1]["content"] + " " + r["completion"][-1]["content"] for r in rows]
    tok = train_tokenizer(texts)
    config = TinyModelConfig(**(model_config or {}))
    model = build_tiny_model(tok, config).eval().to(device)
    params = sum(p.numel() for p in model.parameters())
    prompts = [r["prompt"] for r in picked]
    heads = [r["completion"][-1]["content"].split("</payoff>")[0] + "</payoff>" for r in picked]
    prefixes = [tok(h, add_special_tokens=False)["input_ids"] for h in heads]
    new_tokens = max(map(len, prefixes)) + after_payoff  # the same completion length for every row and run
    transform = PricingTransform("subscription->api", price_per_100_words=10.0)

    prompt_lengths = [len(tok(chat_prompt(tok, p), add_special_tokens=False)["input_ids"]) for p in prompts]
    steerers = {b: Forced(model, tok, batch_size=b) for b in (1, n_prompts)}

    def requests(transform_=None, budget=None, texts_=None) -> list[SteerRequest]:
        out = []
        for i, p in enumerate(prompts):
            n = new_tokens if budget is None else budget[i]
            req = SteerRequest(texts_[i] if texts_ else p, transform=transform_, max_new_tokens=n)
            req.forced = [] if texts_ else prefixes[i]  # type: ignore[attr-defined]
            out.append(req)
        return out

    def run_plain(batch: int) -> float:
        t0 = time.perf_counter()
        outs = steerers[batch].generate(requests())
        assert all(o.completion_tokens == new_tokens for o in outs)
        return time.perf_counter() - t0

    def run_steered(batch: int) -> float:
        t0 = time.perf_counter()
        outs = steerers[batch].generate(requests(transform))
        assert all(o.spliced and o.completion_tokens == new_tokens for o in outs)
        return time.perf_counter() - t0

    def run_reprompt(batch: int) -> float:
        t0 = time.perf_counter()
        first = steerers[batch].generate(requests(budget=[len(x) for x in prefixes]))
        edited = []
        for p, out in zip(prompts, first, strict=True):
            matrix = PayoffMatrix.from_dict(parse_payoff_tolerant(extract_block(out.text, "payoff")))
            head = out.text.split("<payoff>")[0] + "<payoff>" + render_payoff(transform(matrix)) + "</payoff>"
            edited.append(chat_prompt(tok, p) + head)
        steerers[batch].generate(requests(budget=[new_tokens - len(x) for x in prefixes], texts_=edited))
        return time.perf_counter() - t0

    runs = {
        "unsteered": run_plain,
        "steered (splice, KV cache kept)": run_steered,
        "re-prompted (2nd prefill)": run_reprompt,
    }
    results: dict[tuple[str, int], float] = {}
    for batch in (1, n_prompts):
        run_plain(batch)  # warm-up
        for _ in range(repeats):
            for name, fn in runs.items():
                t = fn(batch)
                results[(name, batch)] = min(results.get((name, batch), float("inf")), t)
    lines = [
        "## Pricing steering overhead (`gtalign.steering.Steerer`)",
        "",
        f"{n_prompts} compact prompts from the demonstrations ({min(prompt_lengths)}-{max(prompt_lengths)} "
        "tokens), each forced to its own "
        f"demonstration up to `</payoff>` ({min(map(len, prefixes))}-{max(map(len, prefixes))} tokens), then "
        f"{new_tokens} completion tokens in total, greedy; Qwen2 architecture ({params / 1e6:.1f} M parameters, "
        f"hidden {config.hidden_size}, {config.num_hidden_layers} layers), device {device}"
        + (f", {threads} torch thread(s)" if device == "cpu" else "")
        + f", best of {repeats} interleaved runs. See benchmarks/steering.py for the method.",
        "",
        "| batch | run | best wall time | vs unsteered |",
        "|---|---|---|---|",
    ]
    for batch in (1, n_prompts):
        base = results[("unsteered", batch)]
        for name in runs:
            t = results[(name, batch)]
            lines.append(f"| {batch} | {name} | {t:.2f} s | {t / base:.3f}x |")
    lines += ["", "Target: steered / unsteered <= 1.15x.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        sys.stdout.write(bench_steering(Path(tmp)) + "\n")
