"""The paper's published numbers (Tables 3-7 of arXiv 2510.08872v3), typed, to print beside ours.

`gtalign/resources/paper_results.json` holds one record per number: table, model, source, metric (our metric names,
see `gtalign.evaluate.metrics.METRICS`), value (percentages stored as fractions), and `opponent` for Table 6. Our
model names are matched to the paper's methods by `PAPER_ALIASES` (or an explicit mapping), so a model trained with
`reward.aggregation: linear` appears next to the paper's "+Linear Comb." row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from gtalign.layout import rl_model_name

__all__ = ["PAPER_ALIASES", "PaperResults", "load_paper_results", "paper_key"]

# RL variant -> the paper's method it reproduces
RL_VARIANTS_IN_PAPER = {"cobb_douglas": "gtalign", "linear": "linear", "user": "user_reward", "llm": "llm_reward"}
# our model / variant name -> the paper's method key in paper_results.json
PAPER_ALIASES: dict[str, str] = {
    "base": "qwen2.5-3b",
    "qwen2.5-3b": "qwen2.5-3b",
    "qwen2.5-3b-instruct": "qwen2.5-3b",
    "sft": "sft",
    "gtalign": "gtalign",
    "cobb_douglas": "gtalign",
    "linear": "linear",
    "user": "user_reward",
    "user_reward": "user_reward",
    "llm": "llm_reward",
    "llm_reward": "llm_reward",
    "qwen3-32b": "qwen3-32b",
    # a model evaluated under its folder name (artifacts/models/rl-<variant>)
    **{rl_model_name(v): key for v, key in RL_VARIANTS_IN_PAPER.items()},
}


def paper_key(model: str, explicit: Mapping[str, str] | None = None) -> str | None:
    """The paper's method for one of our model names, or None (explicit mapping first, then the aliases)."""
    if explicit and model in explicit:
        return explicit[model]
    return PAPER_ALIASES.get(model.lower())


@dataclass(frozen=True)
class PaperResults:
    models: dict[str, str]  # key -> display name, in the paper's row order
    values: dict[tuple[str, str, str, str, str | None], float]  # (table, model, source, metric, opponent)
    notes: dict[str, str]

    def get(self, table: str, model: str, source: str, metric: str, opponent: str | None = None) -> float | None:
        return self.values.get((table, model, source, metric, opponent))

    def has(self, table: str, model: str) -> bool:
        return any(k[0] == table and k[1] == model for k in self.values)

    def name(self, model: str) -> str:
        return self.models.get(model, model)


def _parse(doc: Mapping[str, Any]) -> PaperResults:
    values = {
        (str(r["table"]), r["model"], r["source"], r["metric"], r.get("opponent")): float(r["value"])
        for r in doc["results"]
    }
    return PaperResults(dict(doc["models"]), values, dict(doc.get("notes", {})))


@cache
def _packaged() -> PaperResults:
    text = resources.files("gtalign.resources").joinpath("paper_results.json").read_text(encoding="utf-8")
    return _parse(json.loads(text))


def load_paper_results(path: str | Path | None = None) -> PaperResults:
    """The packaged transcription, or another file with the same layout."""
    if path is None:
        return _packaged()
    return _parse(json.loads(Path(path).read_text(encoding="utf-8")))
