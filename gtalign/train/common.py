"""What SFT and RL share: resumable checkpoints, TRL config defaults, held-out evaluation, curves, MLflow runs.

Kept free of Dagster and of MLflow specifics (those live in `gtalign.train.stages` and `gtalign.tracking`), and of
module-level torch/TRL imports, so that `gtalign train --help` and the unit tests start fast.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import re
import shutil
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from gtalign import tracking
from gtalign.config import ParamsError
from gtalign.data import load_curated
from gtalign.data.prompts import extra_info_of, prompt_messages
from gtalign.evaluate.generate import Generation
from gtalign.evaluate.metrics import score_generations
from gtalign.layout import HELDOUT_EVAL_FILE, HELDOUT_GENERATIONS_FILE, MLFLOW_RUN_FILE, Layout
from gtalign.modeling import generate, load_model, model_identity
from gtalign.train.params import EvalParams

_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
FINGERPRINT_FILE = "gtalign_fingerprint.json"


# ---------------------------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------------------------
def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def parallel_metrics(args: Any) -> dict[str, float]:
    """The processes that trained and the global batch they shared (per-device batch x accumulation x processes),
    from the trainer's own arguments: what a run under `accelerate launch --num_processes N` really did."""
    world = int(args.world_size)
    return {
        "world_size": float(world),
        "global_batch_size": float(args.per_device_train_batch_size * args.gradient_accumulation_steps * world),
    }


def is_main_process() -> bool:
    """Rank 0 under `accelerate launch`/torchrun (which set RANK), or a plain process."""
    return int(os.environ.get("RANK", "0")) == 0


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints: resume only from a complete checkpoint of the same configuration
# ---------------------------------------------------------------------------------------------------------------
def last_checkpoint(folder: Path) -> Path | None:
    """The highest `checkpoint-N` that is complete (has trainer_state.json, written last by the Trainer).

    transformers' `get_last_checkpoint` takes the highest number even when a kill interrupted its saving, and
    resuming from that half-written folder fails.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = [
        (int(m.group(1)), p)
        for p in folder.iterdir()
        if p.is_dir() and (m := _CHECKPOINT_RE.match(p.name)) and (p / "trainer_state.json").is_file()
    ]
    return max(found)[1] if found else None


def checkpoint_step(path: Path) -> int:
    return int(json.loads((Path(path) / "trainer_state.json").read_text())["global_step"])


def fingerprint(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepare_checkpoints(folder: Path, config: Mapping[str, Any], *, resume: bool) -> Path | None:
    """The checkpoint to resume from, or None after clearing stale ones.

    Checkpoints written under another configuration (other params, data or starting model) are removed rather than
    resumed: continuing them would silently mix two experiments.
    """
    folder = Path(folder)
    stamp = folder / FINGERPRINT_FILE
    want = fingerprint(config)
    have = json.loads(stamp.read_text()).get("fingerprint") if stamp.is_file() else None
    ckpt = last_checkpoint(folder)
    if resume and have == want and ckpt is not None:
        return ckpt
    if folder.exists() and is_main_process():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if is_main_process():
        stamp.write_text(json.dumps({"fingerprint": want, "config": config}, indent=2, default=str) + "\n")
    return None


# ---------------------------------------------------------------------------------------------------------------
# TRL configs with CPU-safe defaults
# ---------------------------------------------------------------------------------------------------------------
def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def trl_config(cls: type, *, section: str, fields: Mapping[str, Any], passthrough: Mapping[str, Any]) -> Any:
    """An `SFTConfig`/`GRPOConfig` with our defaults, then `fields`, then the section's `args` (params.yaml
    `sft.args` / `rl.args`, or a preset such as configs/train/qwen2.5-3b.yaml): any field the TRL config has.

    TRL defaults to bf16 (which fails on CPU) and to activation checkpointing (slower, useless for a tiny model):
    on CPU both are off and `use_cpu` is on; on GPU bf16 stays on. The data order follows `seed` unless `data_seed`
    is given. A name or value TRL rejects is a ParamsError naming `<section>.args`.
    """
    gpu = cuda_available()
    args = dict(passthrough)
    kwargs: dict[str, Any] = {
        "bf16": gpu,
        "use_cpu": not gpu,
        "activation_checkpointing": False,
        "save_strategy": "steps",
        "logging_first_step": True,
        "dataloader_num_workers": 0,
        "disable_tqdm": False,
        **fields,
        **({"data_seed": args["seed"]} if "seed" in args else {}),
        **args,
    }
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ParamsError(f"params.yaml: {section}.args: {cls.__name__} rejects it: {e}") from None


def enable_kv_cache(model: Any) -> None:
    """TRL saves `use_cache: false` in config.json after training; a saved policy should generate with its cache."""
    if getattr(model, "config", None) is not None:
        model.config.use_cache = True


# ---------------------------------------------------------------------------------------------------------------
# Curves for `dvc plots` (and the Dagster metadata)
# ---------------------------------------------------------------------------------------------------------------
def write_curve(history: Sequence[Mapping[str, Any]], path: Path, keys: Sequence[str]) -> list[dict[str, float]]:
    """One CSV row per logged step that has at least one of `keys` (TRL's log history, e.g. loss or reward)."""
    rows: dict[int, dict[str, float]] = {}
    for entry in history:
        step = entry.get("step")
        values = {k: float(entry[k]) for k in keys if isinstance(entry.get(k), int | float)}
        if step is not None and values:
            rows.setdefault(int(step), {"step": int(step)}).update(values)
    out = [rows[s] for s in sorted(rows)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["step", *keys], restval="")
        writer.writeheader()
        writer.writerows(out)
    return out


def curve_markdown(rows: Sequence[Mapping[str, float]], key: str, width: int = 48, height: int = 8) -> str:
    """A small text plot of one curve (Dagster metadata renders markdown; no image dependency needed)."""
    points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), int | float) and math.isfinite(r[key])]
    if not points:
        return f"_no {key} logged_"
    if len(points) > width:
        stride = len(points) / width
        points = [points[int(i * stride)] for i in range(width)] + [points[-1]]
    lo, hi = min(v for _, v in points), max(v for _, v in points)
    span = hi - lo or 1.0
    grid = [[" "] * len(points) for _ in range(height)]
    for x, (_, v) in enumerate(points):
        grid[height - 1 - round((v - lo) / span * (height - 1))][x] = "*"
    lines = [f"{hi:9.4f} |" + "".join(grid[0])] + ["          |" + "".join(r) for r in grid[1:-1]]
    lines.append(f"{lo:9.4f} |" + "".join(grid[-1]))
    lines.append(f"           step {points[0][0]} .. {points[-1][0]}")
    return f"**{key}**\n\n```\n" + "\n".join(lines) + "\n```"


# ---------------------------------------------------------------------------------------------------------------
# Held-out evaluation (the same reward code path as RL)
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HeldOutRow:
    uid: str
    source: str
    prompt: list[dict[str, str]]
    ground_truth: str
    extra_info: dict[str, Any]
    split: str = ""


def held_out_rows(root: Path, prompt_style: str, cfg: EvalParams) -> list[HeldOutRow]:
    """Curated rows of `cfg.splits` from the sources that have demonstrations, `per_source` each, deterministic.

    The prompts use the same rendering as the demonstrations (params `curate.prompt_style`), so the evaluation
    measures the trained format, not a prompt mismatch.
    """
    layout = Layout(root)
    table = load_curated(layout.curated)
    sources = sorted(set(table.loc[table["split"] == "train", "source"].astype(str)))
    rows = table[table["split"].isin(cfg.splits) & table["source"].isin(sources)]
    rows = rows.sort_values("uid").sample(frac=1.0, random_state=cfg.seed).groupby("source").head(cfg.per_source)
    rows = rows.sort_values(["source", "uid"])
    return [
        HeldOutRow(
            str(r["uid"]),
            str(r["source"]),
            prompt_messages(r, prompt_style),
            "" if pd.isna(r["ground_truth"]) else str(r["ground_truth"]),
            extra_info_of(r),
            str(r["split"]),
        )
        for r in rows.to_dict("records")
    ]


@dataclass
class PolicyEval:
    """Greedy held-out generations scored by `gtalign.reward.score_batch` and checked by `check_strict`."""

    n: int
    strict_valid: float
    welfare: float  # mean score over scored rows (the reward's aggregation, params.yaml `reward:`)
    user: float
    llm: float
    judge_failures: int
    format_errors: int
    by_source: dict[str, dict[str, float]] = field(default_factory=dict)
    strict_reasons: dict[str, int] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)

    def metrics(self, prefix: str) -> dict[str, float]:
        out = {
            f"{prefix}strict_valid": self.strict_valid,
            f"{prefix}welfare": self.welfare,
            f"{prefix}user": self.user,
            f"{prefix}llm": self.llm,
            f"{prefix}judge_failures": float(self.judge_failures),
            f"{prefix}format_errors": float(self.format_errors),
        }
        for source, m in self.by_source.items():
            out |= {f"{prefix}{k}/{source}": v for k, v in m.items()}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "samples"}


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else 0.0


def score_heldout(rows: Sequence[HeldOutRow], completions: Sequence[str], judge: Any, reward_cfg: Any) -> PolicyEval:
    """Strict validity and welfare of completions for `rows` (pure given the judge; no model involved), scored by
    the evaluation stage's `score_generations`: the RL reward and `check_strict`, one code path."""
    gens = [
        Generation(r.uid, r.source, "", "heldout", r.prompt, c, r.ground_truth, r.extra_info)
        for r, c in zip(rows, completions, strict=True)
    ]
    scored = score_generations(gens, judge, reward_cfg)
    results = [s.result for s in scored]
    by: dict[str, list[tuple[Any, bool]]] = defaultdict(list)
    for r, s in zip(rows, scored, strict=True):
        by[r.source].append((s.result, s.strict_ok))
    known = [res for res in results if res.score is not None]
    by_source = {
        source: {
            "n": float(len(items)),
            "strict_valid": _mean([float(ok) for _, ok in items]),
            "welfare": _mean([res.score for res, _ in items if res.score is not None]),
        }
        for source, items in sorted(by.items())
    }
    reasons = Counter((s.strict_reason or "").split(" (", 1)[0][:60] for s in scored if not s.strict_ok)
    samples = [
        {
            "uid": r.uid,
            "source": r.source,
            "split": r.split,
            "completion": c,
            "score": s.result.score,
            "error": s.result.error,
            "strict": s.strict_ok,
        }
        for r, c, s in zip(rows, completions, scored, strict=True)
    ]
    return PolicyEval(
        n=len(rows),
        strict_valid=_mean([float(s.strict_ok) for s in scored]),
        welfare=_mean([res.score for res in known]),
        user=_mean([res.user_reward for res in known]),
        llm=_mean([res.llm_reward for res in known]),
        judge_failures=sum(1 for res in results if res.error_kind == "judge"),
        format_errors=sum(1 for res in results if res.error_kind == "format"),
        by_source=by_source,
        strict_reasons=dict(reasons.most_common(8)),
        samples=samples,
    )


def evaluate_policy(
    model: Any, tokenizer: Any, rows: Sequence[HeldOutRow], cfg: EvalParams, judge: Any, reward_cfg: Any
) -> PolicyEval:
    """Greedy generation with `gtalign.modeling.generate`, then `score_heldout`."""
    completions = generate(
        model,
        tokenizer,
        [r.prompt for r in rows],
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
    )
    return score_heldout(rows, completions, judge, reward_cfg)


def _eval_key(cache_key: Any, rows: Sequence[HeldOutRow], cfg: EvalParams) -> str:
    return fingerprint({"key": cache_key, "rows": [r.uid for r in rows], "eval": cfg.model_dump()})


def evaluate_folder(
    model_dir: Path,
    rows: Sequence[HeldOutRow],
    cfg: EvalParams,
    judge: Any,
    reward_cfg: Any,
    *,
    cache_key: Any,
    cache_dir: Path | None = None,
) -> PolicyEval:
    """Evaluate a saved model, reusing an evaluation already made with the same key.

    The RL stage compares its policy with its starting point on the same prompts; the SFT stage already evaluated
    that starting point (`<model_dir>/heldout_eval.json`, written with the model), so the demo saves a generation
    pass. New results go to `cache_dir`, never into `model_dir`: that folder is another stage's DVC output, and
    writing into it afterwards would make `dvc status` report that stage as changed.
    """
    key = _eval_key(cache_key, rows, cfg)
    beside = Path(model_dir) / HELDOUT_EVAL_FILE
    if beside.is_file() and (data := json.loads(beside.read_text())).get("key") == key:
        return PolicyEval(**data["eval"])
    cached = None
    if cache_dir is not None:
        cached = Path(cache_dir) / f"{fingerprint({'eval': key, 'model': model_identity(model_dir)})}.json"
        if cached.is_file():
            return PolicyEval(**json.loads(cached.read_text())["eval"])
    model, tokenizer = load_model(model_dir, dtype="float32")
    result = evaluate_policy(model, tokenizer, rows, cfg, judge, reward_cfg)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps({"model": str(model_dir), "key": key, "eval": result.to_dict()}) + "\n")
    return result


def save_eval(
    model_dir: Path, result: PolicyEval, *, cache_key: Any, rows: Sequence[HeldOutRow], cfg: EvalParams
) -> None:
    """Write the evaluation next to the model the stage just wrote, and its generations as JSONL (to inspect)."""
    key = _eval_key(cache_key, rows, cfg)
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / HELDOUT_EVAL_FILE).write_text(json.dumps({"key": key, "eval": result.to_dict()}, indent=2) + "\n")
    with (model_dir / HELDOUT_GENERATIONS_FILE).open("w", encoding="utf-8") as f:
        for sample in result.samples:
            f.write(json.dumps(sample) + "\n")


# ---------------------------------------------------------------------------------------------------------------
# MLflow: one run per training, continued when a killed training resumes
# ---------------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def training_run(
    root: Path,
    name: str,
    params: Mapping[str, Any],
    tags: Mapping[str, str],
    *,
    checkpoints: Path,
    resuming: bool,
    tracking_uri: str | None,
    enabled: bool,
) -> Iterator[Any]:
    """`gtalign.tracking.run` (flattened params, data version and git commit as tags), on rank 0 only.

    A resumed training continues the MLflow run of the killed one (its id is kept next to the checkpoints), so one
    training is one run with one continuous curve. MLflow picks the id up from MLFLOW_RUN_ID, which is removed again
    before training starts: the Hugging Face MLflow callback would otherwise try to start that run a second time.
    """
    if not enabled or not is_main_process():
        yield None
        return
    id_file = Path(checkpoints) / MLFLOW_RUN_FILE
    previous = id_file.read_text().strip() if resuming and id_file.is_file() else None
    if previous and not _run_exists(root, previous, tracking_uri):
        previous = None
    saved = os.environ.pop("MLFLOW_RUN_ID", None)
    if previous:
        os.environ["MLFLOW_RUN_ID"] = previous
    try:
        with tracking.run(root, name, params=_loggable(params), tags=tags, tracking_uri=tracking_uri) as active:
            os.environ.pop("MLFLOW_RUN_ID", None)
            Path(checkpoints).mkdir(parents=True, exist_ok=True)
            id_file.write_text(active.info.run_id + "\n")
            yield active
    finally:
        os.environ.pop("MLFLOW_RUN_ID", None)
        if saved is not None:
            os.environ["MLFLOW_RUN_ID"] = saved


def _loggable(params: Mapping[str, Any]) -> dict[str, Any]:
    """MLflow params are immutable: values that legitimately change between a run and its resumption stay out."""
    return {k: v for k, v in params.items() if k not in ("resume",)}


def _run_exists(root: Path, run_id: str, tracking_uri: str | None) -> bool:
    from mlflow.tracking import MlflowClient

    tracking.setup(root, tracking_uri)
    try:
        MlflowClient().get_run(run_id)
    except Exception:  # an id from another tracking server, or a deleted run: start a fresh run instead
        return False
    return True
