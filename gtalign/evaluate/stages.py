"""The `evaluate` stage: generate with every model on the same held-out prompts, score, compare, report, track.

Like every stage it reads the `evaluate:` (and `reward:`, `curate:`) sections of params.yaml, writes under
`artifacts/` (generations and per-row scores in `artifacts/evaluation/<model>/`, the report, plots and CSVs in
`artifacts/report/`, flat numbers in `artifacts/metrics/evaluation.json`), logs one MLflow run per model (tagged
`gtalign.evaluates_run` with the training run it evaluates, when known) and returns a result object the Dagster asset
turns into metadata. `report_stage` recomputes everything from the saved generations, without any model;
`evaluation_stage` evaluates the pipeline's own models (base, SFT, each RL variant).

Every model is evaluated under the same welfare (`evaluate.aggregation`, Cobb-Douglas by default, as the paper
compares all its methods by W = sqrt(U L)) and the same judge, whatever reward it was trained with.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from gtalign import tracking
from gtalign.config import Params
from gtalign.data import load_curated
from gtalign.evaluate.config import EvaluateConfig
from gtalign.evaluate.directions import directions_markdown, directions_metrics, paper_directions
from gtalign.evaluate.generate import (
    GENERATIONS_FILE,
    GenerateSummary,
    Generation,
    generate_resumable,
    load_generations,
    select_rows,
)
from gtalign.evaluate.metrics import ModelEvaluation, evaluate_model, paired_welfare_difference, score_generations
from gtalign.evaluate.paper import paper_key
from gtalign.evaluate.pareto import PairwiseComparison, compare
from gtalign.evaluate.report import Report, flat_metrics, write_report
from gtalign.layout import MLFLOW_RUN_FILE, Layout, rl_model_name, write_metrics
from gtalign.reward.judges import make_judge

log = logging.getLogger(__name__)

__all__ = [
    "EvaluateResult",
    "compare_models",
    "evaluate_stage",
    "evaluation_stage",
    "pipeline_models",
    "report_stage",
]

MAX_LOGGED_GENERATIONS_BYTES = 100 * 2**20


@dataclass
class EvaluateResult:
    report: Report
    evaluations: dict[str, ModelEvaluation]
    comparisons: list[PairwiseComparison]
    metrics: dict[str, float]
    paths: dict[str, Path]
    generated: dict[str, GenerateSummary] = field(default_factory=dict)
    run_ids: dict[str, str] = field(default_factory=dict)

    @property
    def markdown(self) -> str:
        return self.report.markdown

    @property
    def plots(self) -> list[Path]:
        return self.report.plots


def _judge(params: Params, kind: str) -> Any:
    return make_judge(kind, **params.reward.judge.of(kind))


def compare_models(
    evaluations: Sequence[ModelEvaluation],
    *,
    paper_names: Mapping[str, str] | None = None,
    normalize_hypervolume: bool = False,
) -> list[PairwiseComparison]:
    """Table 6 for every source and every pair of models; GTAlign (by paper alias) is put first, as in the paper."""
    out = []
    sources = list(dict.fromkeys(s for ev in evaluations for s in ev.sources))
    for source in sources:
        for x, y in combinations(evaluations, 2):
            if paper_key(y.model, paper_names) == "gtalign" and paper_key(x.model, paper_names) != "gtalign":
                x, y = y, x
            c = compare(
                source,
                x.model,
                x.points(source),
                y.model,
                y.points(source),
                normalize_hypervolume=normalize_hypervolume,
            )
            if c is not None:
                out.append(c)
    return out


def _write_scores(path: Path, ev: ModelEvaluation) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for r in ev.rows:
            f.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
    return path


def _score_and_report(
    root: Path,
    params: Params,
    cfg: EvaluateConfig,
    generations: Mapping[str, list[Generation]],
    *,
    progress: bool,
    judge: Any | None,
    plots: bool = True,
) -> tuple[Report, dict[str, ModelEvaluation], list[PairwiseComparison], dict[str, float], dict[str, Path]]:
    layout = Layout(root)
    reward_cfg = params.reward.config(aggregation=cfg.aggregation)
    the_judge = judge if judge is not None else _judge(params, cfg.judge)
    evaluations: dict[str, ModelEvaluation] = {}
    paths: dict[str, Path] = {}
    for name, gens in generations.items():
        rows = score_generations(gens, the_judge, reward_cfg, progress=progress)
        ev = evaluate_model(name, rows, resamples=cfg.bootstrap_resamples, confidence=cfg.confidence, seed=cfg.seed)
        evaluations[name] = ev
        model_dir = layout.evaluation_dir(name)
        model_dir.mkdir(parents=True, exist_ok=True)
        paths[f"{name}_scores"] = _write_scores(model_dir / "scores.jsonl", ev)
        (model_dir / "evaluation.json").write_text(json.dumps(ev.to_dict(), indent=1) + "\n", encoding="utf-8")
        paths[f"{name}_evaluation"] = model_dir / "evaluation.json"
    for name, ev in evaluations.items():
        for source, se in ev.sources.items():
            if se.counts["judge_failures"]:
                log.warning(
                    "%s/%s: %d of %d judge calls failed (excluded from the means)",
                    name,
                    source,
                    se.counts["judge_failures"],
                    se.counts["n"],
                )
    evals = list(evaluations.values())
    comparisons = compare_models(evals, paper_names=cfg.paper_models, normalize_hypervolume=cfg.normalize_hypervolume)
    settings = {
        "judge": cfg.judge,
        "aggregation": cfg.aggregation,
        "analyze_rule": reward_cfg.analyze_rule,
        "per_source": cfg.per_source,
        "max_new_tokens": cfg.max_new_tokens,
        "temperature": cfg.temperature,
        "bootstrap": cfg.bootstrap_resamples,
        "seed": cfg.seed,
    }
    metrics = flat_metrics(evals, comparisons)
    for a, b in combinations(sorted(evals, key=lambda ev: ev.model), 2):  # keys independent of evaluation order
        diff = paired_welfare_difference(
            a, b, resamples=cfg.bootstrap_resamples, confidence=cfg.confidence, seed=cfg.seed
        )
        key = f"paired/{a.model}-{b.model}/welfare_diff"
        pairs = ((key, diff.value), (f"{key}_lo", diff.lo), (f"{key}_hi", diff.hi))
        metrics |= {k: round(v, 6) for k, v in pairs if v is not None}  # as flat_metrics rounds
    replicates = params.rl.replicates()
    directions = paper_directions(metrics, replicates=replicates)
    metrics |= directions_metrics(directions)
    steering = layout.steering_report
    report = write_report(
        evals,
        comparisons,
        layout.report,
        paper_names=cfg.paper_models,
        settings=settings,
        confidence=cfg.confidence,
        plots=plots,
        extra_sections=[
            directions_markdown(directions, metrics, replicates),
            *([steering.read_text(encoding="utf-8")] if steering.is_file() else []),
        ],
    )
    write_metrics(layout.metrics("evaluation"), metrics)
    paths.update(report.files)
    paths["metrics"] = layout.metrics("evaluation")
    return report, evaluations, comparisons, metrics, paths


def _track(
    root: Path,
    cfg: EvaluateConfig,
    params: Params,
    evaluations: Mapping[str, ModelEvaluation],
    comparisons: Sequence[PairwiseComparison],
    report: Report,
    model_paths: Mapping[str, str],
    training_run_ids: Mapping[str, str] | None,
    tracking_uri: str | None,
) -> dict[str, str]:
    """One MLflow run per model: its metrics (with CIs and counts), its pairwise Table 6 numbers, the report."""
    import mlflow

    layout = Layout(root)
    run_ids = {}
    logged_params = {"evaluate": cfg.model_dump(mode="json"), "reward": params.written("reward")}
    for name, ev in evaluations.items():
        tags = {"gtalign.stage": "evaluate", "gtalign.model": name}
        if name in model_paths:
            tags["gtalign.model_path"] = str(model_paths[name])
        if training_run_ids and training_run_ids.get(name):
            tags["gtalign.evaluates_run"] = str(training_run_ids[name])
        metrics = ev.flat_metrics()
        for c in comparisons:
            if name in (c.a, c.b):
                me, other = ("a", c.b) if c.a == name else ("b", c.a)
                for k in ("coverage", "hypervolume", "regret"):
                    metrics[f"pareto/{c.source}/vs_{other}/{k}"] = getattr(c, f"{k}_{me}")
                wins, losses = (c.a_wins, c.b_wins) if me == "a" else (c.b_wins, c.a_wins)
                metrics[f"pareto/{c.source}/vs_{other}/wins"] = float(wins)
                metrics[f"pareto/{c.source}/vs_{other}/losses"] = float(losses)
                metrics[f"pareto/{c.source}/vs_{other}/ties"] = float(c.ties)
        with tracking.run(root, f"evaluate:{name}", params=logged_params, tags=tags, tracking_uri=tracking_uri) as r:
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
            for path in report.files.values():
                mlflow.log_artifact(str(path), artifact_path="report")
            model_dir = layout.evaluation_dir(name)
            for fname in ("scores.jsonl", "evaluation.json", GENERATIONS_FILE):
                p = model_dir / fname
                if p.exists() and p.stat().st_size <= MAX_LOGGED_GENERATIONS_BYTES:
                    mlflow.log_artifact(str(p), artifact_path="evaluation")
            run_ids[name] = r.info.run_id
    return run_ids


def evaluate_stage(
    root: Path,
    params: Params,
    models: Mapping[str, str | Path],
    *,
    training_run_ids: Mapping[str, str] | None = None,
    tracking_uri: str | None = None,
    track: bool = True,
    progress: bool = True,
    overwrite: bool = False,
    judge: Any | None = None,
    loader: Any | None = None,
) -> EvaluateResult:
    """Generate (resumably) with each model on the same curated held-out prompts, score, compare and report.

    `models` maps a display name (used in the report, file names and MLflow) to a model folder or hub name.
    `training_run_ids` maps a name to the MLflow run that trained it (tag `gtalign.evaluates_run`). `judge`
    overrides `evaluate.judge` with a ready Judge object (tests, a shared server client); `loader` overrides
    `gtalign.modeling.load_model`.
    """
    if not models:
        raise ValueError("evaluate_stage needs at least one model (name -> path)")
    for name in models:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"model name {name!r} must be a plain folder name")
    root = Path(root)
    cfg = params.evaluate
    layout = Layout(root)
    style = params.curate.prompt_style
    table = load_curated(layout.curated)
    rows = select_rows(table, splits=cfg.splits, per_source=cfg.per_source, sources=cfg.sources, seed=cfg.seed)
    uids = set(rows["uid"].astype(str))
    generated: dict[str, GenerateSummary] = {}
    generations: dict[str, list[Generation]] = {}
    for name, path in models.items():
        generated[name] = generate_resumable(
            name,
            path,
            rows,
            layout.evaluation_dir(name),
            prompt_style=style,
            max_new_tokens=cfg.max_new_tokens,
            batch_size=cfg.batch_size,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            seed=cfg.seed,
            overwrite=overwrite,
            progress=progress,
            loader=loader,
            device=cfg.device,
        )
        gens = [g for g in load_generations(generated[name].path) if g.uid in uids]
        generations[name] = sorted(gens, key=lambda g: (g.source, g.uid))
    report, evaluations, comparisons, metrics, paths = _score_and_report(
        root, params, cfg, generations, progress=progress, judge=judge
    )
    run_ids = (
        _track(
            root,
            cfg,
            params,
            evaluations,
            comparisons,
            report,
            {k: str(v) for k, v in models.items()},
            training_run_ids,
            tracking_uri,
        )
        if track
        else {}
    )
    return EvaluateResult(report, evaluations, comparisons, metrics, paths, generated, run_ids)


def report_stage(
    root: Path,
    params: Params,
    models: Sequence[str] | None = None,
    *,
    training_run_ids: Mapping[str, str] | None = None,
    tracking_uri: str | None = None,
    track: bool = False,
    progress: bool = False,
    judge: Any | None = None,
    plots: bool = True,
) -> EvaluateResult:
    """Recompute every metric, the report and evaluation.json from the saved generations (no model needed).

    `models` picks and orders the model folders under `artifacts/evaluation/` (default: every folder holding a
    generations file, by name). All of each file's records are used.
    """
    root = Path(root)
    cfg = params.evaluate
    layout = Layout(root)
    if models is None:
        found = sorted(p.parent.name for p in layout.evaluation.glob(f"*/{GENERATIONS_FILE}"))
        models = found
    if not models:
        raise FileNotFoundError(f"no {GENERATIONS_FILE} under {layout.evaluation} (run `gtalign eval run` first)")
    generations = {}
    for name in models:
        path = layout.evaluation_dir(name) / GENERATIONS_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path}: no generations for model {name!r}")
        generations[name] = sorted(load_generations(path), key=lambda g: (g.source, g.uid))
    report, evaluations, comparisons, metrics, paths = _score_and_report(
        root, params, cfg, generations, progress=progress, judge=judge, plots=plots
    )
    model_paths = {n: str(gs[0].settings.get("model_path", "")) for n, gs in generations.items() if gs}
    run_ids = (
        _track(root, cfg, params, evaluations, comparisons, report, model_paths, training_run_ids, tracking_uri)
        if track
        else {}
    )
    return EvaluateResult(report, evaluations, comparisons, metrics, paths, {}, run_ids)


# ---------------------------------------------------------------------------------------------------------------
# evaluation of the pipeline's own models: base, SFT and each RL variant, on the same prompts
# ---------------------------------------------------------------------------------------------------------------
def pipeline_models(root: Path, variants: Sequence[str]) -> tuple[dict[str, Path], dict[str, str]]:
    """Display name -> model folder, and -> the MLflow run that trained it (when the training left its id).

    Names are what the report and `artifacts/metrics/evaluation.json` use: `base`, `sft`, then the variant names
    (`cobb_douglas` is GTAlign).
    """
    layout = Layout(root)
    folders = {"base": "base", "sft": "sft", **{v: rl_model_name(v) for v in variants}}
    models, run_ids = {}, {}
    for name, folder in folders.items():
        path = layout.model(folder)
        if not path.exists():
            raise FileNotFoundError(f"{path}: model {name!r} has not been trained yet (run the training stages)")
        models[name] = path
        id_file = layout.checkpoints(folder) / MLFLOW_RUN_FILE
        if id_file.is_file():
            run_ids[name] = id_file.read_text().strip()
    return models, run_ids


def evaluation_stage(
    root: Path, params: Params, *, tracking_uri: str | None = None, track: bool = True
) -> EvaluateResult:
    """Evaluate base, SFT and every RL variant of `pipeline.variants` on the same held-out prompts; write the
    report. Each model's evaluation is its own MLflow run, linked to the run that trained it."""
    models, run_ids = pipeline_models(root, params.pipeline.variants)
    return evaluate_stage(root, params, models, training_run_ids=run_ids, tracking_uri=tracking_uri, track=track)
