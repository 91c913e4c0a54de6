"""Realistic GTAlign completions for benchmarks, built from the real data rows (seeded, no model needed).

Each completion has the shape and size a trained 3B policy writes: a 3-5 sentence `<thinking>`, a strict JSON
payoff with one-decimal values, a 2-4 sentence `<analyze>` naming a cell, and a `<response>` whose kind and length
depend on the source (a worked math answer ending in a boxed result, an article draft or a clarifying question for
medium, a refusal with or without a safe alternative for harmful requests, a clarifying question or a short answer
for ambiguity). Verdicts are drawn on each source's scale so that `--judge column` can replay them.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from gtalign.data.raw import RAW_FILES
from gtalign.game import CELLS
from gtalign.sources import IN_DOMAIN_SOURCES, SOURCES

FILES = {f.source: f.relpath for f in RAW_FILES if f.split == "test" and f.source in IN_DOMAIN_SOURCES}
SCALES = {s: SOURCES[s].family.verdict_scale for s in IN_DOMAIN_SOURCES}
FILLER = [
    "The user's request is fairly clear, so a direct answer keeps effort low for both sides",
    "A clarifying question would cost the user a turn but reduce the risk of answering the wrong thing",
    "Answering and then asking one focused follow-up balances correctness with token cost",
    "The main risk is misreading the intent, which would lower satisfaction and waste compute",
    "Given the context so far, the assistant should favour the option with the best joint payoff.",
]


def _sentences(rng: random.Random, k: int) -> str:
    return ". ".join(rng.sample(FILLER, k)) + "."


def _payoff(rng: random.Random) -> str:
    return json.dumps({c: {"LLM": round(rng.uniform(-2, 5), 1), "user": round(rng.uniform(-2, 5), 1)} for c in CELLS})


def _response(rng: random.Random, source: str, row: pd.Series) -> str:
    gt = row["reward_model"]["ground_truth"]
    if source == "math-hard":
        steps = " ".join(rng.sample(FILLER, 3))
        return f"Let us work it out. {steps} Therefore the answer is $\\boxed{{{gt}}}$."
    if source == "medium":
        if rng.random() < 0.3:
            return "Could you tell me the audience and the length you want for this article?"
        words = gt.split()
        return " ".join(words[: rng.randint(80, 300)])
    if source == "wildguard":
        if gt == "harmful":
            alt = " Instead, I can point you to safe, legal resources on this topic." if rng.random() < 0.6 else ""
            return "I can't help with that request because it could cause harm." + alt
        return "Here is a helpful answer to your question. " + _sentences(rng, 2)
    label, _, answer = gt.partition("###")
    if label == "multipleQAs" and rng.random() < 0.7:
        return "Which one do you mean: the earlier event or the later one?"
    return f"The answer is {answer.split(';')[0][:80].strip() or 'unknown'}."


def generate(data_dir: Path, n: int, seed: int = 0) -> Iterator[dict]:
    rng = random.Random(seed)
    frames = {s: pd.read_parquet(data_dir / f) for s, f in FILES.items()}
    for i in range(n):
        source = IN_DOMAIN_SOURCES[i % len(IN_DOMAIN_SOURCES)]
        row = frames[source].iloc[rng.randrange(len(frames[source]))]
        cell = rng.choice(CELLS)
        completion = (
            f"<thinking>{_sentences(rng, rng.randint(3, 5))}</thinking>"
            f"<payoff>{_payoff(rng)}</payoff>"
            f"<analyze>The frontier keeps the undominated cells. {_sentences(rng, rng.randint(1, 3))} "
            f"Chosen: {cell}.</analyze>"
            f"<response>{_response(rng, source, row)}</response>"
        )
        yield {
            "completion": completion,
            "data_source": source,
            "ground_truth": row["reward_model"]["ground_truth"],
            "judge_score": rng.choice(SCALES[source]),
            "extra_info": {k: str(v) for k, v in row["extra_info"].items() if k == "single_turn_prompt"},
        }
