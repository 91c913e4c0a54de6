"""Generation on the held-out sets, resumable, saved so every metric can be recomputed without the model.

Why a file per model and not an in-memory list: real evaluation runs (a 3B model on 7 test sets) take hours and get
interrupted. Each batch is appended to `<dir>/<model>/generations.jsonl` as soon as it is decoded, one JSON object
per prompt keyed by `uid`; a restart reads the uids already there and generates only the rest. A crash mid-write
leaves at most one partial last line, which the reader drops (and the writer cuts off before appending).

A record holds what scoring needs (uid, source, label, ground_truth, extra_info, the completion), what the length
metrics need (token counts with the model's own tokenizer: the whole completion, its `<response>` part, the prompt),
and what reproducibility needs (the prompt messages, the model name, path and content identity, the generation
settings). Records made with other settings (another max_new_tokens, temperature or prompt style) are never mixed into
one file: resuming with different settings raises `GenerationMismatchError`. Records of another model (its content
identity, `gtalign.modeling.model_identity`, changed: it was retrained) are stale, so they are discarded and
regenerated; a moved or copied project, whose model paths differ but whose models do not, resumes.

Run it through `gtalign eval run` or `gtalign.evaluate.stages.evaluate_stage`; the model is loaded only when some
prompt is still missing.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from gtalign.data.prompts import extra_info_of, prompt_messages
from gtalign.modeling import chat_prompt, generate, load_model, model_identity, resolve_model_path

log = logging.getLogger(__name__)

GENERATIONS_FILE = "generations.jsonl"
SETTING_KEYS = ("max_new_tokens", "temperature", "top_p", "prompt_style")


class GenerationMismatchError(RuntimeError):
    """A generations file holds records made with other settings than the ones asked for now."""


@dataclass(frozen=True)
class Generation:
    """One saved completion: everything the metrics need, so they can be recomputed without the model."""

    uid: str
    source: str
    label: str
    model: str
    prompt: list[dict[str, str]]
    completion: str
    ground_truth: str
    extra_info: dict[str, Any] = field(default_factory=dict)
    response_tokens: int = 0  # tokens of the <response> part (after the first "<response>", up to "</response>")
    total_tokens: int = 0  # tokens of the whole completion = reasoning + response
    prompt_tokens: int | None = None
    truncated: bool = False  # hit max_new_tokens (the re-tokenized completion is that long): likely cut off
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def reasoning_tokens(self) -> int:
        return max(self.total_tokens - self.response_tokens, 0)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Generation:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


# ---------------------------------------------------------------------------------------------------------------
# Which prompts: the curated held-out rows, the same for every model
# ---------------------------------------------------------------------------------------------------------------
def select_rows(
    table: pd.DataFrame,
    *,
    splits: Sequence[str] = ("test",),
    per_source: int | None = None,
    sources: Sequence[str] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """The evaluation rows: the held-out split(s), optionally a seeded sample of `per_source` rows per source.

    The sample depends only on (table, seed), so every model sees the same prompts (Table 6 pairs instances by uid).
    """
    rows = table[table["split"].isin(list(splits))]
    if sources is not None:
        rows = rows[rows["source"].isin(list(sources))]
    if per_source is not None:
        rows = rows.sample(frac=1.0, random_state=seed).groupby("source", sort=True).head(per_source)
    return rows.sort_values(["source", "uid"]).reset_index(drop=True)


def response_part(completion: str) -> str:
    """The response the user sees: after the first `<response>` up to `</response>` (or the end when cut off).

    The reasoning part is everything before the first `<response>`, the same split the latency term uses, so
    reasoning + response = the completion (up to the tags themselves).
    """
    _, sep, rest = completion.partition("<response>")
    if not sep:
        return ""
    return rest.split("</response>", 1)[0].strip()


def count_tokens(tokenizer: Any, text: str) -> int:
    if not text:
        return 0
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


# ---------------------------------------------------------------------------------------------------------------
# The generations file
# ---------------------------------------------------------------------------------------------------------------
def _repair_tail(path: Path) -> None:
    """Cut a partial last line (a crash mid-write) so the next append starts on a fresh line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        data = path.read_bytes()
        cut = data.rfind(b"\n") + 1
        f.truncate(cut)
        log.warning("%s: dropped a partial last line (%d bytes)", path, len(data) - cut)


def load_generations(path: Path) -> list[Generation]:
    """Every complete record of a generations file, first record per uid (a broken line is skipped and logged)."""
    path = Path(path)
    if not path.exists():
        return []
    out: dict[str, Generation] = {}
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                gen = Generation.from_dict(json.loads(line))
            except (ValueError, TypeError) as e:
                log.warning("%s:%d: unreadable record skipped (%s)", path, n, e)
                continue
            out.setdefault(gen.uid, gen)
    return list(out.values())


@dataclass
class GenerateSummary:
    model: str
    path: Path
    total: int  # prompts asked for
    generated: int  # generated in this call
    skipped: int  # already in the file (resumed)


def _settings(model_path: str, max_new_tokens: int, temperature: float, top_p: float, style: str) -> dict[str, Any]:
    return {
        "model_path": model_path,
        "model_id": model_identity(model_path),
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "prompt_style": style,
    }


def _check_settings(existing: Iterable[Generation], settings: Mapping[str, Any], path: Path) -> None:
    for gen in existing:
        differ = {k: (gen.settings.get(k), settings[k]) for k in SETTING_KEYS if gen.settings.get(k) != settings[k]}
        if differ:
            raise GenerationMismatchError(
                f"{path}: uid {gen.uid} was generated with other settings {differ} (old, new); "
                "use another output folder or overwrite=True"
            )


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="prompt", disable=not enabled, dynamic_ncols=True)


def _default_loader(device: str | None) -> Callable[[str], tuple[Any, Any]]:
    def load(path: str) -> tuple[Any, Any]:
        import torch

        chosen = device
        if device == "auto":
            chosen = "cuda" if torch.cuda.is_available() else None
        return load_model(resolve_model_path(path), device=chosen)  # a base-model pointer opens its pretrained model

    return load


def generate_resumable(
    model_name: str,
    model_path: str | Path,
    rows: pd.DataFrame | Sequence[Mapping[str, Any]],
    out_dir: Path,
    *,
    prompt_style: str = "compact",
    max_new_tokens: int = 256,
    batch_size: int = 8,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    loader: Callable[[str], tuple[Any, Any]] | None = None,
    device: str | None = "auto",
) -> GenerateSummary:
    """Generate a completion for every row not yet in `out_dir/generations.jsonl`, appending after each batch.

    `loader(path) -> (model, tokenizer)` defaults to `gtalign.modeling.load_model` on `device` ("auto": CUDA when
    available, else CPU); it is called only when something is left to generate. Prompts are ordered by length so a
    batch pads little; the file order does not matter (records are keyed by uid). Sampling (temperature > 0) is
    seeded per batch, so an interrupted run reproduces an uninterrupted one only when batches line up.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / GENERATIONS_FILE
    if overwrite and path.exists():
        path.unlink()
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else [dict(r) for r in rows]
    settings = _settings(str(model_path), max_new_tokens, temperature, top_p, prompt_style)
    _repair_tail(path)
    existing = load_generations(path)
    if any(g.settings.get("model_id") != settings["model_id"] for g in existing):
        log.warning("%s: saved for another version of model %r; generating again", path, model_name)
        path.unlink()
        existing = []
    _check_settings(existing, settings, path)
    done = {g.uid for g in existing}
    pending = [r for r in records if str(r["uid"]) not in done]
    summary = GenerateSummary(model_name, path, len(records), 0, len(records) - len(pending))
    if not pending:
        return summary
    model, tokenizer = (loader or _default_loader(device))(str(model_path))
    prompts = [prompt_messages(r, prompt_style) for r in pending]
    prompt_lens = [count_tokens(tokenizer, chat_prompt(tokenizer, p)) for p in prompts]
    order = sorted(range(len(pending)), key=lambda i: prompt_lens[i])
    with path.open("a", encoding="utf-8") as f, _progress(len(records), f"generate {model_name}", progress) as bar:
        bar.update(summary.skipped)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            texts = generate(
                model,
                tokenizer,
                [prompts[i] for i in idx],
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                batch_size=len(idx),
                seed=seed + start,
            )
            for i, text in zip(idx, texts, strict=True):
                row = pending[i]
                total = count_tokens(tokenizer, text)
                gen = Generation(
                    uid=str(row["uid"]),
                    source=str(row["source"]),
                    label=str(row.get("label") or ""),
                    model=model_name,
                    prompt=prompts[i],
                    completion=text,
                    ground_truth=str(row["ground_truth"]),
                    extra_info=extra_info_of(row),
                    response_tokens=count_tokens(tokenizer, response_part(text)),
                    total_tokens=total,
                    prompt_tokens=prompt_lens[i],
                    truncated=total >= max_new_tokens,
                    settings=settings,
                )
                f.write(gen.to_json() + "\n")
            f.flush()
            summary.generated += len(idx)
            bar.update(len(idx))
    return summary
