"""The pipeline's stages as library functions: the CLI, `dvc repro` and the Dagster assets all call these.

Each stage reads params (a dict, normally params.yaml), writes its outputs under `artifacts/`, writes its metrics to
`artifacts/metrics/<stage>.json` (what `dvc metrics show` reads), logs an MLflow run, and returns a small result
object that the Dagster assets turn into metadata. No driver adds logic of its own.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from gtalign.config import reward_config, section
from gtalign.game import WelfareRule


@dataclass(frozen=True)
class Layout:
    """Where each stage writes, relative to the repo root (dvc.yaml names the same paths)."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def curated(self) -> Path:
        return self.artifacts / "curated"

    @property
    def demonstrations(self) -> Path:
        return self.artifacts / "demonstrations"

    @property
    def teacher_eval(self) -> Path:
        return self.artifacts / "teacher_eval"

    def metrics(self, stage: str) -> Path:
        return self.artifacts / "metrics" / f"{stage}.json"


def _write_metrics(path: Path, metrics: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _log(
    root: Path,
    stage: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    artifacts: Iterable[Path],
    tracking_uri: str | None,
) -> str:
    import mlflow

    from gtalign import tracking

    with tracking.run(root, stage, params=params, tracking_uri=tracking_uri) as active:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, int | float)})
        for path in artifacts:
            mlflow.log_artifact(str(path))
        return active.info.run_id


# ---------------------------------------------------------------------------------------------------------------
# curate: raw parquet -> curated, validated table
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class CurateResult:
    table: pd.DataFrame
    report: Any  # gtalign.data.CurationReport
    validation: Any  # gtalign.data.ValidationReport
    paths: dict[str, Path]
    metrics: dict[str, float]
    run_id: str | None = None


def _validate_table(layout: Layout, table: pd.DataFrame, cfg: Any) -> Any:
    from gtalign.data import validate

    report = validate(table, max_turn_chars=cfg.max_turn_chars)
    layout.curated.mkdir(parents=True, exist_ok=True)
    (layout.curated / "validation.md").write_text(report.to_markdown(), encoding="utf-8")
    return report


def curate_stage(
    root: Path,
    params: Mapping[str, Any],
    *,
    tracking_uri: str | None = None,
    track: bool = True,
    validate: bool = True,
) -> CurateResult:
    """Load the raw sets, curate (flag, drop by named rules, cap, split) and validate; stop on a failed suite.

    `validate=False` leaves validation to the caller (Dagster runs it as a blocking asset check: `validate_stage`).
    """
    from gtalign.data import CurateConfig, check_raw_data, curate, load_raw, write_curated

    layout = Layout(root)
    cfg = CurateConfig(**section(dict(params), "curate"))
    check_raw_data(layout.data)
    table, report = curate(load_raw(layout.data), cfg)
    validation = None
    if validate:
        validation = _validate_table(layout, table, cfg)
        validation.raise_for_failures()  # a failed suite stops the pipeline before anything is trained
    paths = write_curated(table, report, layout.curated)
    counts = table.groupby(["split"]).size().to_dict()
    metrics = {
        "rows": len(table),
        **{f"rows_{k}": int(v) for k, v in counts.items()},
        "dropped": sum(sum(v.values()) for v in report.dropped.values()),
    }
    if validation is not None:
        metrics["expectations"] = validation.n_expectations
        paths["validation_md"] = layout.curated / "validation.md"
    _write_metrics(layout.metrics("curate"), metrics)
    logged = [p for k, p in paths.items() if k != "data"]
    cfg_dict = {"curate": cfg.model_dump(mode="json")}
    run_id = _log(root, "curate", cfg_dict, metrics, logged, tracking_uri) if track else None
    return CurateResult(table, report, validation, paths, metrics, run_id)


def validate_stage(root: Path, params: Mapping[str, Any]) -> Any:
    """Validate the curated table on disk; returns the ValidationReport (the caller decides what failure does)."""
    from gtalign.data import CurateConfig, load_curated

    layout = Layout(root)
    cfg = CurateConfig(**section(dict(params), "curate"))
    return _validate_table(layout, load_curated(layout.curated), cfg)


# ---------------------------------------------------------------------------------------------------------------
# demonstrations: curated train rows -> four-block SFT examples (rule teacher)
# ---------------------------------------------------------------------------------------------------------------
def demo_row(row: Mapping[str, Any]):
    from gtalign.demonstrations import DemoRow

    def text(key: str) -> str:
        value = row.get(key)
        return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)

    return DemoRow(text("source"), text("label"), text("question"), text("ground_truth"), text("answer") or None)


def prompt_messages(row: Mapping[str, Any], style: str) -> list[dict[str, str]]:
    """The published prompt (verbatim) for `full`, the compact rendering for tiny models."""
    from gtalign.data import messages_of
    from gtalign.protocol import render_messages

    if style == "full":
        return messages_of(row["messages"])
    return render_messages(str(row["question"]), style="compact")


def extra_info_of(row: Mapping[str, Any]) -> dict[str, Any]:
    raw = row.get("extra_info")
    if isinstance(raw, str) and raw:
        try:
            return json.loads(raw)
        except ValueError:
            return {}
    return dict(raw) if isinstance(raw, Mapping) else {}


@dataclass
class WelfareSummary:
    """Mean reward terms per source over a set of scored completions."""

    rows: dict[str, dict[str, float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    def to_markdown(self, title: str) -> str:
        head = (
            f"### {title}\n\n| source | n | welfare | user | llm | answer | format |\n|---|---|---|---|---|---|---|\n"
        )
        body = "".join(
            f"| {s} | {m['n']:.0f} | {m['welfare']:.3f} | {m['user']:.3f} | {m['llm']:.3f} | {m['answer']:.3f} | "
            f"{m['format']:.2f} |\n"
            for s, m in self.rows.items()
        )
        errs = "".join(f"\n- {k}: {v}" for k, v in self.errors.items())
        return head + body + (f"\nErrors:{errs}\n" if errs else "")


def summarize(sources: list[str], results: list[Any]) -> WelfareSummary:
    by: dict[str, list[Any]] = defaultdict(list)
    errors: Counter[str] = Counter()
    for source, r in zip(sources, results, strict=True):
        if r.error:
            errors[r.error.split(" (", 1)[0][:80]] += 1
        if r.score is not None:
            by[source].append(r)
    summary = WelfareSummary(errors=dict(errors))
    for source in sorted(by):
        rs = by[source]
        summary.rows[source] = {
            "n": len(rs),
            "welfare": statistics.fmean(r.score for r in rs),
            "user": statistics.fmean(r.user_reward for r in rs),
            "llm": statistics.fmean(r.llm_reward for r in rs),
            "answer": statistics.fmean(r.answer_reward or 0.0 for r in rs),
            "format": statistics.fmean(r.components["format"] or 0.0 for r in rs),
        }
    return summary


def _score_teacher(frame: pd.DataFrame, completions: list[str], params: Mapping[str, Any]) -> WelfareSummary:
    from gtalign.reward import RewardInput, score_batch
    from gtalign.reward.judges import make_judge

    reward = section(dict(params), "reward")
    judge_kind = str(section(dict(params), "demonstrations").get("judge", "rule"))
    judge = make_judge(judge_kind, **dict(section(reward, "judge").get(judge_kind) or {}))
    rows = [
        RewardInput(c, str(r["source"]), str(r["ground_truth"]), extra_info_of(r))
        for c, r in zip(completions, frame.to_dict("records"), strict=True)
    ]
    results = score_batch(rows, judge, reward_config(dict(params)))
    return summarize(frame["source"].astype(str).tolist(), results)


@dataclass
class DemonstrationsResult:
    path: Path
    count: int
    summary: WelfareSummary
    metrics: dict[str, float]
    run_id: str | None = None


def _openai_teacher_texts(
    root: Path, records: list[dict[str, Any]], style: str, params: Mapping[str, Any]
) -> tuple[list[str | None], str, dict[str, float], str]:
    """Best-of-N demonstrations from a served model (`gtalign.teacher`), scored with the judge named in
    `demonstrations.judge` (options from `reward.judge.<kind>`): (text per row or None, teacher label, metrics,
    markdown stats). A relative `cache_path` is resolved against `root`, so every driver shares one cache."""
    from pydantic import ValidationError

    from gtalign.config import ParamsError
    from gtalign.reward.judges import make_judge
    from gtalign.teacher import OpenAITeacherConfig, TeacherPrompt, best_of_n

    cfg = section(dict(params), "demonstrations")
    try:
        teacher_cfg = OpenAITeacherConfig(**dict(cfg.get("openai") or {}))
    except ValidationError as e:
        raise ParamsError(f"params.yaml: demonstrations.openai: {e}") from None
    if teacher_cfg.cache_path is not None and not teacher_cfg.cache_path.is_absolute():
        teacher_cfg = teacher_cfg.model_copy(update={"cache_path": root / teacher_cfg.cache_path})
    judge_kind = str(cfg.get("judge", "rule"))
    judge_options = dict(section(section(dict(params), "reward"), "judge").get(judge_kind) or {})
    judge = make_judge(judge_kind, **judge_options)
    prompts = [
        TeacherPrompt(
            str(r["uid"]), str(r["source"]), str(r["ground_truth"]), prompt_messages(r, style), extra_info_of(r)
        )
        for r in records
    ]
    result = best_of_n(
        prompts,
        teacher_cfg,
        judge,
        reward_config(dict(params)),
        judge_config={"kind": judge_kind, **judge_options},
    )
    st = result.stats

    def mean(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    markdown = (
        f"\n### Teacher ({teacher_cfg.model}, best of {teacher_cfg.n})\n\n"
        f"- prompts {st.prompts}, kept {st.kept}, dropped {st.dropped_total} {dict(st.dropped)}\n"
        f"- candidates {st.candidates}: {st.requests} requests, {st.calls} HTTP calls, {st.cache_hits} cache hits, "
        f"{st.resumed} prompts resumed\n"
        f"- candidate problems: {dict(st.failures) or 'none'}\n"
        f"- welfare: kept {mean(st.welfare_kept_mean)} vs all candidates {mean(st.welfare_all_mean)}\n"
    )
    return result.texts, f"openai:{teacher_cfg.model}", st.to_metrics(), markdown


def demonstrations_stage(
    root: Path, params: Mapping[str, Any], *, tracking_uri: str | None = None, track: bool = True
) -> DemonstrationsResult:
    """Demonstrations for every curated train row by the configured teacher, scored by the welfare reward.

    `demonstrations.teacher`: `rule` (offline, right by construction, one per row) or `openai` (best of N by welfare
    among strictly valid answers of a served model, `demonstrations.openai`; a row without a valid candidate is
    dropped and counted in the metrics). Each JSONL row names its `teacher`.
    """
    from gtalign.config import ParamsError
    from gtalign.data import load_curated

    layout = Layout(root)
    cfg = section(dict(params), "demonstrations")
    style = str(section(dict(params), "curate").get("prompt_style", "full"))
    teacher = str(cfg.get("teacher", "rule"))
    table = load_curated(layout.curated)
    train = table[table["split"].isin(list(cfg.get("splits", ["train"])))].reset_index(drop=True)
    records = train.to_dict("records")
    teacher_metrics: dict[str, float] = {}
    teacher_md = ""
    if teacher == "rule":
        from gtalign.demonstrations import demonstrate

        seed, max_words = int(cfg.get("seed", 0)), int(cfg.get("max_response_words", 120))
        rule = WelfareRule(kind=str(cfg.get("analyze_rule", "sum")))
        all_texts: list[str | None] = [
            demonstrate(demo_row(r), seed=seed, rule=rule, max_words=max_words) for r in records
        ]
        label = "rule"
    elif teacher == "openai":
        all_texts, label, teacher_metrics, teacher_md = _openai_teacher_texts(root, records, style, params)
    else:
        raise ParamsError(f"params.yaml: demonstrations.teacher must be 'rule' or 'openai', got {teacher!r}")
    keep = [i for i, text in enumerate(all_texts) if text is not None]
    texts = [t for t in all_texts if t is not None]
    kept_rows = train.iloc[keep].reset_index(drop=True)
    layout.demonstrations.mkdir(parents=True, exist_ok=True)
    path = layout.demonstrations / "demonstrations.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for r, text in zip(kept_rows.to_dict("records"), texts, strict=True):
            f.write(
                json.dumps(
                    {
                        "uid": r["uid"],
                        "data_source": r["source"],
                        "split": r["split"],
                        "prompt": prompt_messages(r, style),
                        "completion": [{"role": "assistant", "content": text}],
                        "ground_truth": r["ground_truth"],
                        "extra_info": extra_info_of(r),
                        "teacher": label,
                    }
                )
                + "\n"
            )
    summary = _score_teacher(kept_rows, texts, params)
    (layout.demonstrations / "summary.md").write_text(
        summary.to_markdown(f"Demonstrations ({teacher} teacher)") + teacher_md
    )
    metrics = {
        "count": len(texts),
        "welfare_mean": statistics.fmean(m["welfare"] for m in summary.rows.values()) if summary.rows else 0.0,
        **{f"welfare_{s}": m["welfare"] for s, m in summary.rows.items()},
        **teacher_metrics,
    }
    _write_metrics(layout.metrics("demonstrations"), metrics)
    run_id = (
        _log(
            root,
            "demonstrations",
            {"demonstrations": cfg, "prompt_style": style},
            metrics,
            [layout.demonstrations / "summary.md"],
            tracking_uri,
        )
        if track
        else None
    )
    return DemonstrationsResult(path, len(texts), summary, metrics, run_id)


# ---------------------------------------------------------------------------------------------------------------
# teacher_eval: the rule teacher on a sample of every test set, scored with the rule judges (the early demo)
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class TeacherEvalResult:
    summary: WelfareSummary
    metrics: dict[str, float]
    path: Path
    run_id: str | None = None


def teacher_eval_stage(
    root: Path, params: Mapping[str, Any], *, tracking_uri: str | None = None, track: bool = True
) -> TeacherEvalResult:
    from gtalign.data import load_curated
    from gtalign.demonstrations import demonstrate

    layout = Layout(root)
    cfg = section(dict(params), "teacher_eval")
    per_source, seed = int(cfg.get("per_source", 20)), int(cfg.get("seed", 0))
    table = load_curated(layout.curated)
    test = table[table["split"] == "test"]
    sample = test.sample(frac=1.0, random_state=seed).groupby("source").head(per_source).reset_index(drop=True)
    texts = [demonstrate(demo_row(r), seed=seed) for r in sample.to_dict("records")]
    summary = _score_teacher(sample, texts, params)
    layout.teacher_eval.mkdir(parents=True, exist_ok=True)
    path = layout.teacher_eval / "summary.md"
    path.write_text(summary.to_markdown("Rule teacher on the test sets (rule judges)"), encoding="utf-8")
    metrics = {f"welfare_{s}": m["welfare"] for s, m in summary.rows.items()}
    _write_metrics(layout.metrics("teacher_eval"), metrics)
    run_id = _log(root, "teacher_eval", {"teacher_eval": cfg}, metrics, [path], tracking_uri) if track else None
    return TeacherEvalResult(summary, metrics, path, run_id)


# ---------------------------------------------------------------------------------------------------------------
# evaluation of the pipeline's own models: base, SFT and each RL variant, on the same prompts
# ---------------------------------------------------------------------------------------------------------------
def pipeline_variants(params: Mapping[str, Any]) -> list[str]:
    """The RL variants the pipeline trains and evaluates (`pipeline.variants`; the `paper` preset adds baselines)."""
    variants = section(dict(params), "pipeline").get("variants") or ["cobb_douglas"]
    return [str(v) for v in variants]


def pipeline_models(root: Path, variants: Iterable[str]) -> tuple[dict[str, Path], dict[str, str]]:
    """Display name -> model folder, and -> the MLflow run that trained it (when the training left its id).

    Names are what the report and `artifacts/metrics/evaluation.json` use: `base`, `sft`, then the variant names
    (`cobb_douglas` is GTAlign).
    """
    from gtalign.train.common import MLFLOW_RUN_FILE, TrainLayout

    layout = TrainLayout(root)
    folders = {"base": "base", "sft": "sft", **{v: f"rl-{v}" for v in variants}}
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
    root: Path, params: Mapping[str, Any], *, tracking_uri: str | None = None, track: bool = True
) -> Any:
    """Evaluate base, SFT and every RL variant of `pipeline.variants` on the same held-out prompts; write the
    report. Each model's evaluation is its own MLflow run, linked to the run that trained it."""
    from gtalign.evaluate.stages import evaluate_stage

    models, run_ids = pipeline_models(root, pipeline_variants(params))
    return evaluate_stage(root, params, models, training_run_ids=run_ids, tracking_uri=tracking_uri, track=track)
