"""The steering evaluation (`gtalign steer eval`): steer held-out prompts under every pricing mode, compare.

Writes `artifacts/steering/report.md` (the report's "Pricing steering" section, included by `report_stage`),
`artifacts/steering/records.jsonl` (one record per answer and mode) and `artifacts/metrics/steering.json` (flat
metrics, `<mode>/<source>/<metric>`), and logs an MLflow run `steering_eval`. The decoding itself is
`gtalign.steering`. `steering.eval.analyze_modes` (or `--analyze`) says who writes `<analyze>` in the steered runs:
`model` (the labels above) and/or `solver` (`SteerRequest.analyze`; labels `solver/<mode>`), every pricing mode in
each, all against the same unsteered answers, so `[model, solver]` reports the two side by side.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gtalign import tracking
from gtalign.config import Params
from gtalign.data import load_curated
from gtalign.data.prompts import extra_info_of, prompt_messages
from gtalign.game import ACTIONS, split_cell
from gtalign.layout import Layout
from gtalign.modeling import load_model
from gtalign.protocol import named_cell, read_tolerant, response_action
from gtalign.registry import resolve_model
from gtalign.reward import RewardConfig, RewardInput, score_batch
from gtalign.reward.consistency import matrix_consistency
from gtalign.reward.judges import Judge, make_judge
from gtalign.steering import (
    ANALYZE_MODES,
    PRICING_MODES,
    AnalyzeMode,
    PricingTransform,
    Steerer,
    SteeringConfig,
    SteerOutput,
    SteerRequest,
)

__all__ = ["SteeringEvalResult", "evaluate_steering", "steering_eval_stage"]

UNSTEERED, UNSTEERED_AGAIN = "(unsteered)", "(unsteered again)"  # run names no condition label can take


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


def _interleaved(
    steerer: Steerer, runs: Mapping[str, list[SteerRequest]]
) -> dict[str, tuple[list[SteerOutput], float]]:
    """Every run's outputs and wall time, the runs taking turns batch by batch (A B C ... A B C ...), so that a slow
    spell of the shared machine hits every run alike instead of whichever ran then. Batches are the ones
    `Steerer.generate` forms itself (`batch_size` requests in order), so the outputs are those of whole runs."""
    done: dict[str, tuple[list[SteerOutput], float]] = {name: ([], 0.0) for name in runs}
    size = max(len(requests) for requests in runs.values())
    for start in range(0, size, steerer.batch_size):
        for name, requests in runs.items():
            outs, secs = _timed_generate(steerer, requests[start : start + steerer.batch_size])
            done[name] = (done[name][0] + outs, done[name][1] + secs)
    return done


def _timing(base: list[SteerOutput], base_s: float, outs: list[SteerOutput], secs: float) -> dict[str, float]:
    """A condition's time against the unsteered run of the same prompts, whole and per completion token, since
    steering changes lengths."""
    u_n, s_n = (max(1, sum(o.completion_tokens for o in run)) for run in (base, outs))
    return {
        "unsteered_s": base_s,
        "steered_s": secs,
        "ratio": secs / base_s,
        "ratio_per_token": (secs / s_n) / (base_s / u_n),
        "prompts": float(len(outs)),
    }


def _time_pair(
    steerer: Steerer,
    prompts: list[Any],
    transform: PricingTransform,
    max_new: int,
    repeats: int,
    analyze: AnalyzeMode = "model",
) -> dict[str, float]:
    """Best-of-`repeats` wall time of the same prompts unsteered and steered, interleaved (A B A B ...) so that a
    change in the machine's load hits both alike (benchmarks/device_check.py's method; the evaluation times its
    whole runs instead, `_timing`)."""
    best: dict[str, tuple[float, list[SteerOutput]]] = {"unsteered": (math.inf, []), "steered": (math.inf, [])}
    for _ in range(max(1, repeats)):
        for name, t, a in (("unsteered", None, "model"), ("steered", transform, analyze)):
            outs, secs = _timed_generate(
                steerer, [SteerRequest(p, transform=t, max_new_tokens=max_new, analyze=a) for p in prompts]
            )
            best[name] = min(best[name], (secs, outs), key=lambda pair: pair[0])
    (u_s, base), (s_s, outs) = best["unsteered"], best["steered"]
    return _timing(base, u_s, outs, s_s)


def _analyze_label(analyze: AnalyzeMode, label: str) -> str:
    """A condition's label: the pricing mode's, under `solver/` when the solver writes the analysis."""
    return label if analyze == "model" else f"{analyze}/{label}"


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


def steering_eval_stage(root: Path, params: Params, **options: Any) -> SteeringEvalResult:
    """The stage entry (CLI, DVC, Dagster): parse params.yaml's `steering:` and `reward:` once, then
    `evaluate_steering` (the rule judge with `reward.judge.rule` options); `options` are its keyword options."""
    judge = make_judge("rule", **params.reward.judge.of("rule"))
    return evaluate_steering(root, params.steering, judge=judge, reward=params.reward.config(), **options)


def evaluate_steering(
    root: Path,
    cfg: SteeringConfig,
    *,
    judge: Judge,
    reward: RewardConfig,
    model: str | None = None,
    per_source: int | None = None,
    analyze_modes: Sequence[AnalyzeMode] | None = None,
    out_dir: Path | None = None,
    tracking_uri: str | None = None,
    track: bool = True,
) -> SteeringEvalResult:
    """Steer held-out prompts under every pricing mode and compare with the unsteered answers of the same model.

    Curated rows of `steering.eval.split` (test; dev to choose settings), `per_source` per source (seeded), compact
    prompts, greedy. Reported per source and mode: how often the matrix optimum's action changes (intended) and the
    response's action changes (realised) and in which direction, of the moved optima those whose response does the
    new optimum's action (and of them those it had to change to), whether the steered answer follows its edited
    matrix exactly (`matrix_consistency`, both analyze and response), the change in response words and in welfare
    (`score_batch` with `judge` and `reward`), and the wall time of the steered run against the unsteered one (also
    per completion token, since steering changes answer lengths). Each analyze mode (`model`: the model writes
    `<analyze>`; `solver`: `render_analyze` writes it, labels `solver/<mode>`) runs every pricing mode. `model`,
    `per_source` and `analyze_modes` override `cfg.eval`.
    """
    root = Path(root)
    layout = Layout(root)
    ev = cfg.eval
    per_source = int(per_source if per_source is not None else ev.per_source)
    model_ref = model or str(ev.model or "")
    if not model_ref:
        raise ValueError("steering eval needs a model: --model PATH|models:/NAME@ALIAS (or steering.eval.model)")
    modes = _eval_modes(cfg, ev.modes, ev.prices if ev.prices is not None else [cfg.price_per_100_words])
    analyze_modes = list(analyze_modes) if analyze_modes is not None else list(ev.analyze_modes)
    unknown = [a for a in analyze_modes if a not in ANALYZE_MODES]
    if unknown or not analyze_modes or len(set(analyze_modes)) != len(analyze_modes):
        raise ValueError(f"analyze modes {analyze_modes}: expected distinct values of {', '.join(ANALYZE_MODES)}")
    conditions = [(a, _analyze_label(a, label), t) for a in analyze_modes for label, t in modes]
    out_dir = Path(out_dir) if out_dir else layout.artifacts / "steering"

    table = load_curated(layout.curated)
    held_out = table[table["split"] == ev.split]
    sample = held_out.sample(frac=1.0, random_state=ev.seed).groupby("source").head(per_source)
    rows = sample.sort_values(["source", "uid"], kind="stable").to_dict("records")
    if not rows:
        raise ValueError(f"{layout.curated}: no {ev.split} rows to steer (steering.eval.split)")
    prompts = [prompt_messages(r, "compact") for r in rows]
    sources = [str(r["source"]) for r in rows]

    model_dir = resolve_model(model_ref, root=root, tracking_uri=tracking_uri).folder
    lm, tokenizer = load_model(model_dir, device=ev.device)
    steerer = Steerer(lm, tokenizer, rule=cfg.welfare_rule, batch_size=cfg.batch_size)
    max_new = cfg.max_new_tokens
    steerer.generate([SteerRequest(prompts[0], max_new_tokens=4)])  # warm-up: first-call costs are not steering's

    def score(outs: list[SteerOutput]) -> list[Any]:
        inputs = [
            RewardInput(o.text, str(r["source"]), str(r["ground_truth"]), extra_info_of(r))
            for o, r in zip(outs, rows, strict=True)
        ]
        return score_batch(inputs, judge, reward)

    # Two unsteered runs bracket the conditions in every batch's turn; their mean is the baseline (the faster of the
    # two, as before 2026-12-05, set a single steered run against the better of two unsteered draws: biased upwards).
    unsteered = [SteerRequest(p, max_new_tokens=max_new) for p in prompts]
    runs = _interleaved(
        steerer,
        {
            UNSTEERED: unsteered,
            **{
                label: [SteerRequest(p, transform=t, max_new_tokens=max_new, analyze=a) for p in prompts]
                for a, label, t in conditions
            },
            UNSTEERED_AGAIN: unsteered,
        },
    )
    (base, base_s), (_, again_s) = runs.pop(UNSTEERED), runs.pop(UNSTEERED_AGAIN)
    base_scores = score(base)
    records: list[dict[str, Any]] = []
    for analyze, label, _ in conditions:
        outs = runs[label][0]
        for r, b, o, bs, ss in zip(rows, base, outs, base_scores, score(outs), strict=True):
            reading = read_tolerant(o.text)
            cons = matrix_consistency(reading, cfg.welfare_rule)
            records.append(
                {
                    "uid": r["uid"],
                    "source": str(r["source"]),
                    "mode": label,
                    **({"analyze": analyze, "solver_analyze": o.solver_analyze} if analyze != "model" else {}),
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
    timing = {label: _timing(base, (base_s + again_s) / 2, outs, secs) for label, (outs, secs) in runs.items()}
    labels = [label for _, label, _ in conditions]
    metrics, markdown = _summarize_eval(records, timing, modes, labels, sources, model_ref, cfg)
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

        # the eval keys as params.yaml spelt them (unset defaults not logged), the per_source and analyze modes used
        run_eval = {
            **ev.model_dump(mode="json", exclude_unset=True),
            "per_source": per_source,
            "analyze_modes": analyze_modes,
        }
        run_params = _mlflow_keys(
            {"steering": {**cfg.model_dump(mode="json", exclude={"eval"}), "eval": run_eval}, "model": model_ref}
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
    labels: Sequence[str],
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
        "response's action differs from the unsteered answer's; *new optimum done* = of the answers whose optimum "
        "moved, those whose response does the new optimum's action, and *changed to it* = the same among those whose "
        "unsteered response did not already do it (the claim steering makes: the response follows the edit); "
        "*follows* = analyze and response both act on the "
        "edited matrix's optimum (exact); deltas are steered minus unsteered (response words; welfare = reward score, "
        "rule judge).",
        *(
            [
                "`solver/<mode>` rows: the same edit, and the exact solver writes `<analyze>` (`render_analyze`, the "
                "rule teacher's text) in the splice at `</payoff>`; the model writes only the response. *solver* = "
                "the share of answers whose analysis the solver wrote (for the others, `steer_error` in "
                "records.jsonl says why).",
            ]
            if any(label.startswith("solver/") for label in labels)
            else []
        ),
        "",
        "| mode | source | n | read | spliced | intended | realised | transitions (realised) | new optimum done "
        "(of moved) | changed to it (of those not already doing it) | follows | Δ words | Δ welfare |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label in labels:
        for source in [*sorted(set(sources)), "all"]:
            recs = groups.get((label, source), [])
            if not recs:
                continue
            n = len(recs)
            intended = [r for r in recs if r["intended_from"] and r["intended_from"] != r["intended_to"]]
            realised = [r for r in recs if r["base_action"] != r["steered_action"]]
            # the steering claim proper: of the moved optima, the responses doing the new optimum's action, and of the
            # moved ones the unsteered response did not already do, those that changed to it
            follow = [r for r in intended if r["steered_action"] == r["intended_to"]]
            needed = [r for r in intended if r["base_action"] != r["intended_to"]]
            flipped = [r for r in needed if r["steered_action"] == r["intended_to"]]
            moves = Counter(f"{r['base_action']}->{r['steered_action']}" for r in realised)
            m = {
                "n": float(n),
                "read": sum(r["payoff_read"] for r in recs) / n,
                "spliced": sum(r["spliced"] for r in recs) / n,
                "intended_change": len(intended) / n,
                "realised_change": len(realised) / n,
                "moved": float(len(intended)),
                "follows_moved": len(follow) / len(intended) if intended else float("nan"),
                "flip_needed": float(len(needed)),
                "flipped": len(flipped) / len(needed) if needed else float("nan"),
                "follows": sum(r["follows_analyze"] and r["follows_response"] for r in recs) / n,
                "follows_response": sum(r["follows_response"] for r in recs) / n,
                "delta_words": _mean(r["steered_words"] - r["base_words"] for r in recs),
                "delta_welfare": _mean(
                    r["steered_welfare"] - r["base_welfare"]
                    for r in recs
                    if r["steered_welfare"] is not None and r["base_welfare"] is not None
                ),
            }
            if label.startswith("solver/"):
                m["solver"] = sum(r["solver_analyze"] for r in recs) / n
            metrics.update({f"{label}/{source}/{k}": v for k, v in m.items()})
            metrics.update({f"{label}/{source}/move/{k}": float(v) for k, v in moves.items()})
            move_text = ", ".join(f"{k} {v}" for k, v in moves.most_common()) or "-"
            spliced = f"{m['spliced']:.0%}" + (f" (solver {m['solver']:.0%})" if "solver" in m else "")
            lines.append(
                f"| {label} | {source} | {n} | {m['read']:.0%} | {spliced} | {m['intended_change']:.0%} | "
                f"{m['realised_change']:.0%} | {move_text} | {len(follow)}/{len(intended)} | "
                f"{len(flipped)}/{len(needed)} | {m['follows']:.0%} | {m['delta_words']:+.1f} | "
                f"{m['delta_welfare']:+.3f} |"
            )
    lines += [
        "",
        "Time: each condition's whole run over the prompts above against the mean of two unsteered runs of the "
        "same prompts, every run taking its turn batch by batch (unsteered, the conditions, unsteered again), so "
        "that a slow spell of the machine hits them alike; per token = per completion token, since steering "
        "changes lengths.",
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
