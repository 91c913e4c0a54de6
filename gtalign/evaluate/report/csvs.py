"""The numbers as files: long-format CSVs for `dvc plots`, and the flat metrics for `dvc metrics` and the registry."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gtalign.evaluate.metrics import ModelEvaluation
from gtalign.evaluate.pareto import PairwiseComparison


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(["" if v is None else v for v in r] for r in rows)
    return path


def write_csvs(
    evals: Sequence[ModelEvaluation], comparisons: Sequence[PairwiseComparison], out_dir: Path
) -> dict[str, Path]:
    """Long-format CSVs: one row per (model, source, metric), per instance, per action count, per pair, per count."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "metrics_csv": _write_csv(
            out_dir / "metrics.csv",
            ["model", "source", "metric", "value", "lo", "hi", "n"],
            [
                [ev.model, s, k, e.value, e.lo, e.hi, e.n]
                for ev in evals
                for s, se in ev.sources.items()
                for k, e in se.metrics.items()
            ],
        ),
        "points_csv": _write_csv(
            out_dir / "points.csv",
            ["model", "source", "uid", "label", "user", "llm", "welfare", "response_tokens", "total_tokens"],
            [
                [
                    ev.model,
                    r.gen.source,
                    r.gen.uid,
                    r.gen.label,
                    r.result.user_reward,
                    r.result.llm_reward,
                    r.result.score,
                    r.gen.response_tokens,
                    r.gen.total_tokens,
                ]
                for ev in evals
                for r in ev.rows
            ],
        ),
        "actions_csv": _write_csv(
            out_dir / "actions.csv",
            ["model", "source", "group", "origin", "action", "count", "share"],
            [
                [ev.model, a.source, a.group, a.origin, a.action, a.count, a.share]
                for ev in evals
                for se in ev.sources.values()
                for a in se.actions
            ],
        ),
        "counts_csv": _write_csv(
            out_dir / "counts.csv",
            ["model", "source", "count", "value"],
            [[ev.model, s, k, v] for ev in evals for s, se in ev.sources.items() for k, v in se.counts.items()],
        ),
    }
    fields = list(PairwiseComparison.__dataclass_fields__)
    files["pareto_csv"] = _write_csv(
        out_dir / "pareto.csv", fields, [[c.to_dict()[f] for f in fields] for c in comparisons]
    )
    return files


def flat_metrics(evals: Sequence[ModelEvaluation], comparisons: Sequence[PairwiseComparison]) -> dict[str, float]:
    """Flat numbers for `dvc metrics`: `<model>/<source>/<metric>`, counts, `pareto/<source>/<a>_vs_<b>/...`, and
    each model's `summary()` (`<model>/welfare_mean`, `<model>/answer/<source>`, ...: what the registry reads)."""
    out: dict[str, float] = {}
    for ev in evals:
        out.update({f"{ev.model}/{k}": round(v, 6) for k, v in ev.summary().items()})
        for s, se in ev.sources.items():
            for k, e in se.metrics.items():
                if e.value is not None and math.isfinite(e.value):
                    out[f"{ev.model}/{s}/{k}"] = round(e.value, 6)
            for k, v in se.counts.items():
                out[f"{ev.model}/{s}/count_{k}"] = v
    for c in comparisons:
        prefix = f"pareto/{c.source}/{c.a}_vs_{c.b}"
        for k, v in c.to_dict().items():
            if k not in ("source", "a", "b"):
                out[f"{prefix}/{k}"] = round(v, 6) if isinstance(v, float) else v
    return out
