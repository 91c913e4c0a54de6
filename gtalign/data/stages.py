"""The data stages as library functions: curate (+ validate), SFT demonstrations, the rule teacher on the test sets.

The CLI (`gtalign data ...`), `dvc repro` and the Dagster assets all call these. Each stage reads its params sections,
writes its outputs under `artifacts/` (`gtalign.layout`), its metrics to `artifacts/metrics/<stage>.json`, logs an
MLflow run, and returns a small result object that the Dagster assets turn into metadata.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from gtalign.config import Params, ParamsError
from gtalign.data.curate import (
    CurateConfig,
    CurationReport,
    RuleScreen,
    curate,
    dropped_uids,
    load_curated,
    screen,
    write_curated,
)
from gtalign.data.prompts import extra_info_of, prompt_messages
from gtalign.data.raw import check_raw_data, load_raw
from gtalign.data.validate import ValidationReport
from gtalign.data.validate import validate as run_expectations
from gtalign.demonstrations import DemoRow, demonstrate, demonstrate_steered
from gtalign.demonstrations_game import demonstrate_game
from gtalign.game import ACTIONS, WelfareRule, split_cell
from gtalign.layout import Layout, write_metrics
from gtalign.protocol import named_cell, read_tolerant, response_action
from gtalign.reward import RewardInput, RewardResult, score_batch
from gtalign.reward.judges import make_judge
from gtalign.steering.config import counterfactual_edits
from gtalign.teacher import TeacherPrompt, best_of_n
from gtalign.tracking import log_stage


# ---------------------------------------------------------------------------------------------------------------
# curate: raw parquet -> curated, validated table
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class CurateResult:
    table: pd.DataFrame
    report: CurationReport
    validation: ValidationReport | None
    paths: dict[str, Path]
    metrics: dict[str, float]
    run_id: str | None = None
    raw_validation: ValidationReport | None = None


def _validate_table(layout: Layout, table: pd.DataFrame, cfg: CurateConfig) -> ValidationReport:
    report = run_expectations(table, max_turn_chars=cfg.max_turn_chars)
    layout.curated.mkdir(parents=True, exist_ok=True)
    (layout.curated / "validation.md").write_text(report.to_markdown(), encoding="utf-8")
    return report


def _validate_raw(layout: Layout, raw: pd.DataFrame, rules: RuleScreen, cfg: CurateConfig) -> ValidationReport:
    """The same suites on every raw row, before any preset caps or samples: a row that fails them stops the stage
    unless a named `curate.drop` rule removes it (then it is listed as excused, with its rule and value)."""
    report = run_expectations(raw, max_turn_chars=cfg.max_turn_chars, excused=dropped_uids(raw, rules))
    layout.curated.mkdir(parents=True, exist_ok=True)
    (layout.curated / "raw_validation.md").write_text(report.to_markdown(), encoding="utf-8")
    return report


def raw_validation_stage(root: Path, params: Params) -> ValidationReport:
    """Validate every raw row (excusing those a `curate.drop` rule removes); the caller decides what failure does."""
    layout = Layout(root)
    check_raw_data(layout.data)
    raw = load_raw(layout.data)
    return _validate_raw(layout, raw, screen(raw, params.curate), params.curate)


def curate_stage(
    root: Path,
    params: Params,
    *,
    tracking_uri: str | None = None,
    track: bool = True,
    validate: bool = True,
) -> CurateResult:
    """Load the raw sets, validate every raw row, curate (flag, drop by named rules, cap, split) and validate the
    result; stop on a failed suite. Raw rows are validated before the preset samples, so sampling never hides one.

    `validate=False` leaves validation to the caller (Dagster runs both as blocking asset checks:
    `raw_validation_stage` on raw_data, `validate_stage` on curated_data).
    """
    layout = Layout(root)
    cfg = params.curate
    check_raw_data(layout.data)
    raw = load_raw(layout.data)
    rules = screen(raw, cfg)
    raw_validation = None
    if validate:
        raw_validation = _validate_raw(layout, raw, rules, cfg)
        raw_validation.raise_for_failures()
    table, report = curate(raw, cfg, rules)
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
    if raw_validation is not None:
        paths["raw_validation_md"] = layout.curated / "raw_validation.md"
    write_metrics(layout.metrics("curate"), metrics)
    logged = [p for k, p in paths.items() if k != "data"]
    cfg_dict = {"curate": cfg.model_dump(mode="json")}
    run_id = log_stage(root, "curate", cfg_dict, metrics, logged, tracking_uri) if track else None
    return CurateResult(table, report, validation, paths, metrics, run_id, raw_validation)


def validate_stage(root: Path, params: Params) -> ValidationReport:
    """Validate the curated table on disk; returns the ValidationReport (the caller decides what failure does)."""
    layout = Layout(root)
    return _validate_table(layout, load_curated(layout.curated), params.curate)


# ---------------------------------------------------------------------------------------------------------------
# demonstrations: curated train rows -> four-block SFT examples (rule teacher)
# ---------------------------------------------------------------------------------------------------------------
def demo_row(row: Mapping[str, Any]) -> DemoRow:
    def text(key: str) -> str:
        value = row.get(key)
        return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)

    return DemoRow(text("source"), text("label"), text("question"), text("ground_truth"), text("answer") or None)


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


def summarize(sources: list[str], results: list[RewardResult]) -> WelfareSummary:
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


def _score_teacher(frame: pd.DataFrame, completions: list[str], params: Params) -> WelfareSummary:
    judge_kind = params.demonstrations.judge
    judge = make_judge(judge_kind, **params.reward.judge.of(judge_kind))
    rows = [
        RewardInput(c, str(r["source"]), str(r["ground_truth"]), extra_info_of(r))
        for c, r in zip(completions, frame.to_dict("records"), strict=True)
    ]
    results = score_batch(rows, judge, params.reward.config())
    return summarize(frame["source"].astype(str).tolist(), results)


@dataclass
class DemonstrationsResult:
    path: Path
    count: int
    summary: WelfareSummary
    metrics: dict[str, float]
    run_id: str | None = None
    actions: ActionMix | None = None


def _game_texts(records: list[dict[str, Any]], params: Params) -> tuple[list[int], list[str], list[dict[str, Any]]]:
    """The rule teacher's `game` recipe (`gtalign.demonstrations_game`): (row index per demonstration, texts, their
    variant and pricing edit), the edits being those steering applies (params `steering:`)."""
    cfg = params.demonstrations
    demos = demonstrate_game(
        [demo_row(r) for r in records],
        seed=cfg.seed,
        rule=WelfareRule(kind=cfg.analyze_rule),
        edits=counterfactual_edits(params.steering),
        counterfactual_share=cfg.counterfactual_share,
        max_action_share=cfg.max_action_share,
        max_words=cfg.max_response_words,
    )
    cf_loss = _counterfactual_loss(params)
    extras = [
        {"variant": d.variant, "edit": d.edit, **(cf_loss if d.variant == "counterfactual" else {})} for d in demos
    ]
    return [d.index for d in demos], [d.text for d in demos], extras


def _counterfactual_loss(params: Params) -> dict[str, str]:
    """The SFT row key that starts a counterfactual's loss later (`gtalign.train.sft.tokenize_demonstration`)."""
    marker = {"analyze": "<analyze>", "response": "<response>"}.get(params.demonstrations.counterfactual_loss)
    return {"loss_from": marker} if marker else {}


def _uid(uid: str, variant: str | None) -> str:
    """A derived row's uid: its prompt's, with the variant (the uid stays unique per demonstration)."""
    return {"counterfactual": f"{uid}:cf", "steered": f"{uid}:steered"}.get(str(variant), uid)


def _label_texts(records: list[dict[str, Any]], params: Params) -> tuple[list[int], list[str], list[dict[str, Any]]]:
    """The rule teacher's `label` recipe: one row per record, each followed by its steered copy when
    `demonstrations.steered` and a steering cost edit (`steering.eval` modes and prices) moves its optimum."""
    cfg = params.demonstrations
    rule = WelfareRule(kind=cfg.analyze_rule)
    kw = {
        "seed": cfg.seed,
        "rule": rule,
        "max_words": cfg.max_response_words,
        "ambiguity": cfg.ambiguity,
        "min_frontier": cfg.min_frontier,
    }
    edits = counterfactual_edits(params.steering, published=False) if cfg.steered else ()
    loss = _counterfactual_loss(params)
    keep, texts, extras = [], [], []
    for i, r in enumerate(records):
        row = demo_row(r)
        keep.append(i)
        texts.append(demonstrate(row, **kw))
        extras.append({})  # a label row's JSONL is what it was before steered copies existed
        steered = demonstrate_steered(row, edits, **kw) if edits else None
        if steered is not None:
            keep.append(i)
            texts.append(steered[1])
            extras.append({"variant": "steered", "edit": steered[0].name, **loss})
    return keep, texts, extras


@dataclass
class ActionMix:
    """What the demonstrations' responses do (`protocol.response_action`), counted per source and label, per user
    type of the cell the analyze names, and per variant (game: base | counterfactual; label: label | steered)."""

    by_label: dict[tuple[str, str], Counter[str]] = field(default_factory=dict)
    by_user_type: dict[str, Counter[str]] = field(default_factory=dict)
    by_variant: dict[str, Counter[str]] = field(default_factory=dict)
    total: Counter[str] = field(default_factory=Counter)
    mismatched: int = 0  # responses whose action is not that of the cell their analyze names

    def metrics(self) -> dict[str, float]:
        """`action_share/<source>/<label>/<action>`, `.../user_type/<DQ|VQ>/...`, `.../variant/<v>/...`,
        `action_share/all/<action>`, `action_count/all/<action>` (every action named, 0.0 when absent) and
        `action_mismatch` (responses not doing the action of the cell their analyze names)."""

        def shares(prefix: str, c: Counter[str]) -> dict[str, float]:
            n = sum(c.values())
            return {f"{prefix}/{a}": (c[a] / n if n else 0.0) for a in (*ACTIONS, *sorted(set(c) - set(ACTIONS)))}

        out: dict[str, float] = {}
        for (source, label), c in sorted(self.by_label.items()):
            out.update(shares(f"action_share/{source}/{label}", c))
        for user_type, c in sorted(self.by_user_type.items()):
            out.update(shares(f"action_share/user_type/{user_type}", c))
        for variant, c in sorted(self.by_variant.items()):
            out.update(shares(f"action_share/variant/{variant}", c))
        out.update(shares("action_share/all", self.total))
        out.update({f"action_count/all/{a}": float(self.total[a]) for a in ACTIONS})
        out["action_mismatch"] = float(self.mismatched)
        return out

    def to_markdown(self) -> str:
        """The action mix as a table: counts per source and label, then per user type and variant, then all."""
        extra = sorted(set(self.total) - set(ACTIONS))
        cols = [*ACTIONS, *extra]
        rule = "|---|---|" + "---|" * len(cols)
        head = f"### Action mix of the responses\n\n| group | n | {' | '.join(cols)} |\n{rule}\n"

        def line(name: str, c: Counter[str]) -> str:
            return f"| {name} | {sum(c.values())} | {' | '.join(str(c[a]) for a in cols)} |\n"

        body = "".join(line(f"{s} / {lab}", c) for (s, lab), c in sorted(self.by_label.items()))
        body += "".join(line(f"user type {u}", c) for u, c in sorted(self.by_user_type.items()))
        body += "".join(line(f"variant {v}", c) for v, c in sorted(self.by_variant.items()))
        note = f"\nResponses not doing the action of the cell their analyze names: {self.mismatched}\n"
        return head + body + line("all", self.total) + note


def action_mix(frame: pd.DataFrame, texts: list[str], variants: list[str] | None = None) -> ActionMix:
    """Count what each demonstration's response does; `none` when it has no readable response, `?` for the user
    type when its analyze names no cell."""
    mix = ActionMix()
    labels = zip(frame["source"].astype(str), frame["label"].astype(str), strict=True)
    for k, ((source, label), text) in enumerate(zip(labels, texts, strict=True)):
        reading = read_tolerant(text)
        action = response_action(reading.response) or "none"
        cell = named_cell(reading.analyze)
        user_type = split_cell(cell)[0] if cell else "?"
        variant = variants[k] if variants is not None else "label"
        for counter in (
            mix.by_label.setdefault((source, label), Counter()),
            mix.by_user_type.setdefault(user_type, Counter()),
            mix.by_variant.setdefault(variant, Counter()),
            mix.total,
        ):
            counter[action] += 1
        mix.mismatched += cell is None or split_cell(cell)[1] != action
    return mix


def _openai_teacher_texts(
    root: Path, records: list[dict[str, Any]], style: str, params: Params
) -> tuple[list[str | None], str, dict[str, float], str]:
    """Best-of-N demonstrations from a served model (`gtalign.teacher`), scored with the judge named in
    `demonstrations.judge` (options from `reward.judge.<kind>`): (text per row or None, teacher label, metrics,
    markdown stats). A relative `cache_path` is resolved against `root`, so every driver shares one cache."""
    teacher_cfg = params.demonstrations.openai
    if teacher_cfg is None:
        raise ParamsError("params.yaml: demonstrations.openai: the openai teacher needs an endpoint (base_url, model)")
    if teacher_cfg.cache_path is not None and not teacher_cfg.cache_path.is_absolute():
        teacher_cfg = teacher_cfg.model_copy(update={"cache_path": root / teacher_cfg.cache_path})
    judge_kind = params.demonstrations.judge
    judge_options = params.reward.judge.of(judge_kind)
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
        params.reward.config(),
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
    root: Path, params: Params, *, tracking_uri: str | None = None, track: bool = True
) -> DemonstrationsResult:
    """Demonstrations for every curated train row by the configured teacher, scored by the welfare reward.

    `demonstrations.teacher`: `rule` (offline, right by construction, one per row) or `openai` (best of N by welfare
    among strictly valid answers of a served model, `demonstrations.openai`; a row without a valid candidate is
    dropped and counted in the metrics). Each JSONL row names its `teacher`.
    """
    layout = Layout(root)
    cfg = params.demonstrations
    style = params.curate.prompt_style
    teacher = cfg.teacher
    table = load_curated(layout.curated)
    train = table[table["split"].isin(cfg.splits)].reset_index(drop=True)
    records = train.to_dict("records")
    teacher_metrics: dict[str, float] = {}
    teacher_md = ""
    extras: list[dict[str, Any]] | None = None  # rule teacher: each row's variant (and pricing edit)
    if teacher == "rule" and cfg.recipe == "game":
        keep, texts, extras = _game_texts(records, params)
        label = "rule:game"
    elif teacher == "rule":
        keep, texts, extras = _label_texts(records, params)
        label = "rule"
    else:
        all_texts, label, teacher_metrics, teacher_md = _openai_teacher_texts(root, records, style, params)
        keep = [i for i, text in enumerate(all_texts) if text is not None]
        texts = [t for t in all_texts if t is not None]
    kept_rows = train.iloc[keep].reset_index(drop=True)
    layout.demonstrations.mkdir(parents=True, exist_ok=True)
    path = layout.demonstrations_file
    with path.open("w", encoding="utf-8") as f:
        for k, (r, text) in enumerate(zip(kept_rows.to_dict("records"), texts, strict=True)):
            extra = extras[k] if extras is not None else {}
            f.write(
                json.dumps(
                    {
                        "uid": _uid(r["uid"], extra.get("variant")),
                        "data_source": r["source"],
                        "split": r["split"],
                        "prompt": prompt_messages(r, style),
                        "completion": [{"role": "assistant", "content": text}],
                        "ground_truth": r["ground_truth"],
                        "extra_info": extra_info_of(r),
                        "teacher": label,
                        **extra,
                    }
                )
                + "\n"
            )
    summary = _score_teacher(kept_rows, texts, params)
    variants = [str(e.get("variant", "label")) for e in extras] if extras is not None else None
    mix = action_mix(kept_rows, texts, variants)
    (layout.demonstrations / "summary.md").write_text(
        summary.to_markdown(f"Demonstrations ({teacher} teacher)") + "\n" + mix.to_markdown() + teacher_md
    )
    metrics = {
        "count": len(texts),
        "welfare_mean": statistics.fmean(m["welfare"] for m in summary.rows.values()) if summary.rows else 0.0,
        **{f"welfare_{s}": m["welfare"] for s, m in summary.rows.items()},
        **mix.metrics(),
        **teacher_metrics,
    }
    write_metrics(layout.metrics("demonstrations"), metrics)
    run_id = (
        log_stage(
            root,
            "demonstrations",
            {"demonstrations": params.written("demonstrations"), "prompt_style": style},
            metrics,
            [layout.demonstrations / "summary.md"],
            tracking_uri,
        )
        if track
        else None
    )
    return DemonstrationsResult(path, len(texts), summary, metrics, run_id, mix)


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
    root: Path, params: Params, *, tracking_uri: str | None = None, track: bool = True
) -> TeacherEvalResult:
    layout = Layout(root)
    per_source, seed = params.teacher_eval.per_source, params.teacher_eval.seed
    table = load_curated(layout.curated)
    test = table[table["split"] == "test"]
    sample = test.sample(frac=1.0, random_state=seed).groupby("source").head(per_source).reset_index(drop=True)
    demo = params.demonstrations  # the teacher the demonstrations come from
    texts = [
        demonstrate(demo_row(r), seed=seed, ambiguity=demo.ambiguity, min_frontier=demo.min_frontier)
        for r in sample.to_dict("records")
    ]
    summary = _score_teacher(sample, texts, params)
    layout.teacher_eval.mkdir(parents=True, exist_ok=True)
    path = layout.teacher_eval / "summary.md"
    path.write_text(summary.to_markdown("Rule teacher on the test sets (rule judges)"), encoding="utf-8")
    metrics = {f"welfare_{s}": m["welfare"] for s, m in summary.rows.items()}
    write_metrics(layout.metrics("teacher_eval"), metrics)
    logged = {"teacher_eval": params.written("teacher_eval")}
    run_id = log_stage(root, "teacher_eval", logged, metrics, [path], tracking_uri) if track else None
    return TeacherEvalResult(summary, metrics, path, run_id)
