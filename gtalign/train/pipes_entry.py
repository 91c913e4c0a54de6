"""The training step as an external process: `python -m gtalign.train.pipes_entry {base,sft,rl} ...`.

Dagster launches this through `dg.PipesSubprocessClient` (pipelines/defs/training.py), so the same command can run
under `accelerate launch` (DeepSpeed, FSDP, several GPUs) or on another machine. It needs no Dagster import beyond
the tiny `dagster_pipes` package: rank 0 opens the Pipes channel and reports the materialization (final metrics,
MLflow run id, curves as markdown) and the asset checks; other ranks only train.

The params arrive as a JSON file (`--params-json`), written by the asset from params.yaml plus its run config, so
that every rank reads the same values without talking to Dagster. Without it, params.yaml (+ `--preset`) is read.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gtalign.config import Params, load_typed_params, parse_params
from gtalign.train.common import is_main_process
from gtalign.train.stages import base_model_stage, rl_stage, sft_stage

# Check names, shared with the Dagster asset definitions (which declare them as check specs).
SFT_CHECKS = ("sft_loss_finite", "sft_format_validity")
RL_CHECKS = ("rl_loss_finite", "rl_reward_not_collapsed", "rl_judge_failure_rate")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gtalign.train.pipes_entry", description=__doc__.split("\n\n")[0])
    p.add_argument("stage", choices=["base", "sft", "rl"])
    p.add_argument("--variant", default=None, help="rl only: cobb_douglas | user | llm | linear | ces")
    p.add_argument("--root", default=".", help="repo root")
    p.add_argument("--params-json", default=None, help="the full params as JSON (written by the Dagster asset)")
    p.add_argument("--preset", action="append", default=[], help="YAML overlaid on params.yaml (no --params-json)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: the project's)")
    p.add_argument("--no-track", action="store_true")
    p.add_argument("--no-eval", action="store_true")
    return p


def _finite(values: Sequence[float]) -> bool:
    return all(isinstance(v, int | float) and math.isfinite(v) for v in values)


def _md(text: str) -> dict[str, Any]:
    return {"raw_value": text, "type": "md"}


def _numbers(metrics: dict[str, float]) -> dict[str, Any]:
    """Top-level metrics as metadata (per-source ones go into one markdown table instead of dozens of entries)."""
    return {k: float(v) for k, v in metrics.items() if "/" not in k and math.isfinite(float(v))}


def _by_source_md(metrics: dict[str, float], prefix: str) -> str:
    rows: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        if key.startswith(prefix) and "/" in key:
            name, source = key[len(prefix) :].split("/", 1)
            rows.setdefault(source, {})[name] = value
    if not rows:
        return "_no held-out evaluation_"
    cols = sorted({c for r in rows.values() for c in r})
    head = "| source | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols) + "\n"
    return head + "".join(
        f"| {s} | " + " | ".join(f"{r.get(c, float('nan')):.3f}" for c in cols) + " |\n"
        for s, r in sorted(rows.items())
    )


def sft_report(result: Any, params: Params) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(materialization metadata, asset check reports) for an SFTResult."""
    cfg = params.sft
    m = result.metrics
    losses = [r["loss"] for r in result.curve if "loss" in r]
    valid = m.get("heldout_strict_valid")
    metadata = {
        **_numbers(m),
        "path": str(result.path),
        "mlflow_run_id": result.run_id or "",
        "loss_curve": _md(result.curve_markdown()),
        "heldout_by_source": _md(_by_source_md(m, "heldout_")),
    }
    checks = [
        {
            "check_name": "sft_loss_finite",
            "passed": bool(losses) and _finite(losses),
            "metadata": {"logged_losses": len(losses), "loss_final": float(losses[-1]) if losses else float("nan")},
        },
        {
            "check_name": "sft_format_validity",
            "passed": valid is not None and valid >= cfg.min_strict_valid,
            "metadata": {
                "heldout_strict_valid": float(valid) if valid is not None else float("nan"),
                "threshold": cfg.min_strict_valid,
                "init_strict_valid": float(m.get("init_strict_valid", float("nan"))),
            },
        },
    ]
    return metadata, checks


def rl_report(result: Any, params: Params) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(materialization metadata, asset check reports) for an RLResult."""
    cfg = params.rl.with_variant(result.variant)
    m = result.metrics
    losses = [r["loss"] for r in result.curve if "loss" in r]
    after, before = m.get("heldout_welfare"), m.get("init_welfare")
    not_collapsed = after is not None and (before is None or after >= cfg.collapse_ratio * before)
    rate = m.get("reward_judge_failures", 0.0) / max(1.0, m.get("reward_completions", 0.0))
    metadata = {
        **_numbers(m),
        "variant": result.variant,
        "path": str(result.path),
        "mlflow_run_id": result.run_id or "",
        "reward_curve": _md(result.curve_markdown()),
        "heldout_by_source": _md(_by_source_md(m, "heldout_")),
    }
    checks = [
        {
            "check_name": "rl_loss_finite",
            "passed": bool(losses) and _finite(losses),
            "metadata": {"logged_losses": len(losses)},
        },
        {
            "check_name": "rl_reward_not_collapsed",
            "passed": bool(not_collapsed),
            "metadata": {
                "heldout_welfare": float(after) if after is not None else float("nan"),
                "init_welfare": float(before) if before is not None else float("nan"),
                "collapse_ratio": cfg.collapse_ratio,
                "heldout_strict_valid": float(m.get("heldout_strict_valid", float("nan"))),
            },
        },
        {
            "check_name": "rl_judge_failure_rate",
            "passed": cfg.max_judge_failure_rate is None or rate <= cfg.max_judge_failure_rate,
            "metadata": {"rate": rate, "limit": float(cfg.max_judge_failure_rate or 1.0)},
        },
    ]
    return metadata, checks


def run(args: argparse.Namespace, log: Any = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the stage; return what rank 0 reports (metadata, checks)."""
    root = Path(args.root).resolve()
    if args.params_json:
        params = parse_params(json.loads(Path(args.params_json).read_text(encoding="utf-8")))
    else:
        params = load_typed_params(root / "params.yaml", args.preset)
    common = {"tracking_uri": args.tracking_uri, "track": not args.no_track}
    if log is not None:
        log.info(f"gtalign.train.pipes_entry: {args.stage} in {root}")
    if args.stage == "base":
        result = base_model_stage(root, params, **common)
        return {
            **_numbers(result.metrics),
            "path": str(result.path),
            "kind": result.kind,
            "mlflow_run_id": result.run_id or "",
        }, []
    if args.stage == "sft":
        return sft_report(sft_stage(root, params, evaluate=not args.no_eval, **common), params)
    return rl_report(rl_stage(root, params, args.variant, evaluate=not args.no_eval, **common), params)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes
    except ImportError:  # running outside Dagster on a machine without dagster-pipes
        run(args)
        return 0
    # dagster-pipes 1.13 has no module-level `is_dagster_pipes_process`; its params loader answers the question
    if not (is_main_process() and PipesEnvVarParamsLoader().is_dagster_pipes_process()):
        run(args)
        return 0
    with open_dagster_pipes() as pipes:
        metadata, checks = run(args, pipes.log)
        pipes.report_asset_materialization(metadata=metadata)
        for check in checks:
            pipes.report_asset_check(
                check_name=check["check_name"],
                passed=check["passed"],
                severity="ERROR",
                metadata=check["metadata"],
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
