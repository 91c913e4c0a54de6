"""Curation: flag what is wrong with the raw table, drop only what the config names, cap, and carve a dev split.

Every rule runs on every row and is counted per source, so the report shows the state of the published data even for
rules that drop nothing. A rule removes rows only when it is listed in `CurateConfig.drop`; a row flagged by several
dropping rules is charged to the first of them in `RULES` order, so the dropped counts add up to the rows removed.
Train/test leaks are removed from the train side: the published test sets stay comparable with the paper.
"""

from __future__ import annotations

import json
import re
import unicodedata
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from gtalign.data.raw import ABG_COQA_LABELS, MATH_SOURCES
from gtalign.sources import SOURCES

Rule = Literal[
    "empty_turn",
    "over_long_turn",
    "unparsable_ground_truth",
    "exact_duplicate",
    "normalized_duplicate",
    "train_test_leak",
    "shared_conv_id",
]
RULES: tuple[str, ...] = get_args(Rule)
RULE_DOC: dict[str, str] = {
    "empty_turn": "the latest user turn, a message, or a chat-history turn is empty",
    "over_long_turn": "the latest user turn is longer than `max_turn_chars`",
    "unparsable_ground_truth": "the ground truth does not have the source's format (see `ground_truth_problem`)",
    "exact_duplicate": "same source, split, messages and ground truth as an earlier row",
    "normalized_duplicate": "same normalised latest turn and task (`single_turn_prompt`) as an earlier row, not exact",
    "train_test_leak": "train row whose normalised latest turn or task also occurs in the same source's test split",
    "shared_conv_id": "train row whose conv_id also occurs in the same source's test split (not a leak by itself: "
    "ambig_qa reuses a conv_id for unrelated questions)",
}
SAMPLE_UIDS = 5  # per rule and source


class CurateConfig(BaseModel):
    """The `curate:` section of params.yaml."""

    model_config = ConfigDict(extra="forbid")

    preset: Literal["tiny", "full"] = "tiny"
    seed: int = 0
    dev_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    max_turn_chars: int = Field(6000, gt=0)
    drop: list[Rule] = Field(
        default_factory=lambda: [
            "empty_turn",
            "over_long_turn",
            "unparsable_ground_truth",
            "exact_duplicate",
            "train_test_leak",
        ]
    )
    tiny_train_per_source: int = Field(200, gt=0)
    tiny_test_per_source: int = Field(40, gt=0)
    # Recorded only: gtalign.protocol renders the compact prompt.
    prompt_style: Literal["full", "compact"] = "full"


Counts = dict[str, dict[str, int]]


@dataclass
class CurationReport:
    """What curation found and did: counts per rule per source, sample uids, caps, and rows per split."""

    config: dict[str, Any]
    rows_in: Counts = field(default_factory=dict)
    flagged: Counts = field(default_factory=dict)
    dropped: Counts = field(default_factory=dict)
    samples: dict[str, list[str]] = field(default_factory=dict)
    # rule -> {sample uid: what the rule found there (the offending value)}, so a dropped row's reason is visible
    sample_values: dict[str, dict[str, str]] = field(default_factory=dict)
    capped: Counts = field(default_factory=dict)
    rows_out: Counts = field(default_factory=dict)

    def total_flagged(self, rule: str) -> int:
        return sum(self.flagged.get(rule, {}).values())

    def total_dropped(self, rule: str) -> int:
        return sum(self.dropped.get(rule, {}).values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def _samples_md(self, rule: str) -> str:
        values = self.sample_values.get(rule, {})
        shown = [f"`{uid}` ({values[uid]})" if uid in values else f"`{uid}`" for uid in self.samples.get(rule, [])]
        return ", ".join(shown) or "none"

    def to_markdown(self) -> str:
        """A report a person reads: per-rule counts per source, what was dropped, and the resulting splits."""
        sources = sorted(self.rows_in)
        lines = [
            "# Curation report",
            "",
            f"Preset `{self.config.get('preset')}`, seed {self.config.get('seed')}, "
            f"dev fraction {self.config.get('dev_fraction')}, max turn chars {self.config.get('max_turn_chars')}, "
            f"dropping: {', '.join(self.config.get('drop', [])) or 'nothing'}.",
            "",
            "## Rules (flagged / dropped per source)",
            "",
            "| rule | " + " | ".join(sources) + " | total flagged | total dropped |",
            "|---|" + "---|" * (len(sources) + 2),
        ]
        for rule in RULES:
            cells = [
                f"{self.flagged.get(rule, {}).get(s, 0)} / {self.dropped.get(rule, {}).get(s, 0)}" for s in sources
            ]
            lines.append(
                f"| {rule} | " + " | ".join(cells) + f" | {self.total_flagged(rule)} | {self.total_dropped(rule)} |"
            )
        lines += ["", "Rules:", ""]
        lines += [f"- `{r}`: {RULE_DOC[r]}. Samples: {self._samples_md(r)}" for r in RULES]
        lines += [
            "",
            "## Rows",
            "",
            "| source | in (train/test) | capped by preset | out train | out dev | out test |",
        ]
        lines.append("|---|---|---|---|---|---|")
        for s in sources:
            rin, cap, out = self.rows_in.get(s, {}), self.capped.get(s, {}), self.rows_out.get(s, {})
            lines.append(
                f"| {s} | {rin.get('train', 0)}/{rin.get('test', 0)} | {sum(cap.values())} | "
                f"{out.get('train', 0)} | {out.get('dev', 0)} | {out.get('test', 0)} |"
            )
        total_in = sum(sum(v.values()) for v in self.rows_in.values())
        total_out = sum(sum(v.values()) for v in self.rows_out.values())
        lines += ["", f"{total_in} rows in, {total_out} rows out.", ""]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# text keys and ground-truth checks

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_SPACE = re.compile(r"\s+")
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")
_AMBIG_QA_GT = re.compile(r"^(singleAnswer|multipleQAs)###\s*\S", re.DOTALL)


def normalize_text(text: str | None) -> str:
    """Case-, punctuation- and whitespace-insensitive form used for near-duplicate and leak checks."""
    text = unicodedata.normalize("NFKC", text or "").casefold()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


def _braces_balanced(latex: str) -> bool:
    depth = 0
    prev = ""
    for ch in latex:
        if prev != "\\":
            depth += (ch == "{") - (ch == "}")
            if depth < 0:
                return False
        prev = "" if prev == "\\" else ch
    return depth == 0


def ground_truth_problem(source: str, ground_truth: str | None) -> str | None:
    """Why this ground truth cannot be scored for its source, or None when it can."""
    gt = (ground_truth or "").strip()
    if not gt:
        return "empty"
    if source in MATH_SOURCES:
        if _UNESCAPED_DOLLAR.search(gt):
            return "stray $ (gold answers are bare LaTeX)"
        if not _braces_balanced(gt):
            return "unbalanced braces"
        if gt.count("\\left") != gt.count("\\right"):
            return "unmatched \\left/\\right"
        return None
    if source == "ambig_qa":
        return None if _AMBIG_QA_GT.match(gt) else "not `singleAnswer###…` or `multipleQAs###…`"
    if source == "wildguard":
        labels = sorted(SOURCES["wildguard"].labels)
        return None if gt in labels else f"not one of {labels}"
    if source == "abg-coqa":
        return None if gt in ABG_COQA_LABELS else "not ambiguous / non_ambiguous"
    return None


def _optional(column: pd.Series) -> list[Any]:
    """Values with every kind of missing (None, NaN, pd.NA) as None, so `x or ""` and `is None` are safe."""
    return [None if pd.isna(v) else v for v in column.astype(object)]


def _task_key(frame: pd.DataFrame) -> pd.Series:
    """The underlying task of a row: its normalised `single_turn_prompt`, else its normalised latest turn."""
    task = frame["single_turn_prompt"].fillna("").map(normalize_text)
    question = "q:" + frame["question"].fillna("").map(normalize_text)
    return task.where(task != "", question)


def _has_empty_turn(messages: str | None, extra_info: str | None) -> bool:
    turns = [m.get("content") for m in json.loads(messages or "[]")]
    history = json.loads(extra_info or "{}").get("chat_history") or []
    turns += [m.get("content") for m in history]
    return any(not (t or "").strip() for t in turns)


# ---------------------------------------------------------------------------------------------------------------
# flags


def flag_rows(df: pd.DataFrame, max_turn_chars: int) -> pd.DataFrame:
    """One boolean column per rule in `RULES`, aligned with `df`."""
    nq = df["question"].fillna("").map(normalize_text)
    ntask = df["single_turn_prompt"].fillna("").map(normalize_text)
    question = df["question"].fillna("")
    flags = pd.DataFrame(index=df.index)
    empty_turns = [
        _has_empty_turn(m, e) for m, e in zip(_optional(df["messages"]), _optional(df["extra_info"]), strict=True)
    ]
    flags["empty_turn"] = (question.str.strip() == "") | pd.Series(empty_turns, index=df.index)
    flags["over_long_turn"] = question.str.len() > max_turn_chars
    flags["unparsable_ground_truth"] = [
        ground_truth_problem(s, g) is not None
        for s, g in zip(df["source"], _optional(df["ground_truth"]), strict=True)
    ]
    exact = df.duplicated(["source", "split", "messages", "ground_truth"], keep="first")
    flags["exact_duplicate"] = exact
    keyed = pd.DataFrame({"source": df["source"], "split": df["split"], "nq": nq, "ntask": ntask})
    flags["normalized_duplicate"] = keyed.duplicated(keep="first") & ~exact
    is_train, is_test = df["split"] == "train", df["split"] == "test"
    test_q = set(zip(df["source"][is_test], nq[is_test], strict=True))
    test_task = set(zip(df["source"][is_test], ntask[is_test], strict=True))
    leak = [
        (bool(q) and (s, q) in test_q) or (bool(t) and (s, t) in test_task)
        for s, q, t in zip(df["source"], nq, ntask, strict=True)
    ]
    flags["train_test_leak"] = is_train & pd.Series(leak, index=df.index)
    test_conv = set(zip(df["source"][is_test], df["conv_id"][is_test], strict=True))
    shared = [
        c is not None and (s, c) in test_conv for s, c in zip(df["source"], _optional(df["conv_id"]), strict=True)
    ]
    flags["shared_conv_id"] = is_train & pd.Series(shared, index=df.index)
    return flags[list(RULES)].astype(bool)


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def rule_value(rule: str, row: Mapping[str, Any]) -> str:
    """What `rule` found on `row`, in a few words: the value a person checks to agree with the drop."""
    question = "" if pd.isna(row["question"]) else str(row["question"])
    if rule == "over_long_turn":
        return f"latest turn {len(question)} chars"
    if rule == "unparsable_ground_truth":
        gt = None if pd.isna(row["ground_truth"]) else str(row["ground_truth"])
        return f"ground_truth {_clip(repr(gt))}: {ground_truth_problem(str(row['source']), gt)}"
    if rule == "shared_conv_id":
        return f"conv_id {row['conv_id']}"
    return f"question {_clip(repr(question))}"


@dataclass(frozen=True)
class RuleScreen:
    """Every rule's flags over a table (`flag_rows`) and, per row, the named rule that drops it ("" = kept).

    Computed once per table: `curate` applies it, and the raw validation excuses exactly the rows it drops.
    """

    flags: pd.DataFrame
    dropped_by: pd.Series

    @property
    def dropped(self) -> pd.Series:
        return self.dropped_by != ""


def screen(df: pd.DataFrame, cfg: CurateConfig) -> RuleScreen:
    """Flag every row of `df` (index reset) and charge each dropped row to the first `cfg.drop` rule in `RULES`."""
    df = df.reset_index(drop=True)
    flags = flag_rows(df, cfg.max_turn_chars)
    dropped_by = pd.Series("", index=df.index, dtype=object)
    for rule in RULES:
        if rule in cfg.drop:
            dropped_by = dropped_by.mask((dropped_by == "") & flags[rule], rule)
    return RuleScreen(flags, dropped_by)


def dropped_uids(df: pd.DataFrame, rules: RuleScreen) -> dict[str, str]:
    """uid -> the named rule that drops the row, for the rows of `df` (the table `rules` was computed on)."""
    uids = df["uid"].reset_index(drop=True).astype(str)
    return dict(zip(uids[rules.dropped], rules.dropped_by[rules.dropped], strict=True))


# ---------------------------------------------------------------------------------------------------------------
# seeded, stratified picks


def _source_seed(seed: int, *parts: str) -> int:
    """A per-(source, purpose) seed, stable across processes (unlike `hash`)."""
    return (seed * 1_000_003 + zlib.crc32("/".join(parts).encode("utf-8"))) % (2**32)


def stratified_pick(strata: pd.Series, n: int, seed: int) -> pd.Index:
    """`n` labels of `strata`'s index, spread over the strata in proportion to their sizes; same seed, same pick.

    Rows are shuffled, ranked within their stratum, and scored (rank + 0.5) / stratum size; the n lowest scores win,
    which allocates proportionally (largest remainder) without a rounding pass.
    """
    if n >= len(strata):
        return strata.index
    rng = np.random.default_rng(seed)
    shuffled = strata.iloc[rng.permutation(len(strata))]
    rank = shuffled.groupby(shuffled, sort=False).cumcount()
    size = shuffled.groupby(shuffled, sort=False).transform("size")
    score = (rank + 0.5) / size
    return score.sort_values(kind="stable").index[:n]


def _cap(df: pd.DataFrame, cfg: CurateConfig, report: CurationReport) -> pd.DataFrame:
    """Tiny preset: keep a label-stratified sample of at most N train / M test rows per source."""
    keep: list[pd.Index] = []
    for (source, split), part in df.groupby(["source", "split"], sort=True):
        limit = cfg.tiny_train_per_source if split == "train" else cfg.tiny_test_per_source
        picked = stratified_pick(part["label"].fillna(""), limit, _source_seed(cfg.seed, source, split, "cap"))
        keep.append(picked)
        if len(part) > len(picked):
            report.capped.setdefault(str(source), {})[str(split)] = len(part) - len(picked)
    kept = keep[0].append(keep[1:]) if keep else df.index[:0]
    return df.loc[df.index.isin(kept)]


def _carve_dev(df: pd.DataFrame, cfg: CurateConfig) -> pd.DataFrame:
    """Move `dev_fraction` of each source's train tasks to `dev`, stratified by label.

    Whole tasks (rows sharing a normalised `single_turn_prompt`, e.g. the turns of one math conversation) move
    together, so dev never shares a task with train.
    """
    df = df.copy()
    if cfg.dev_fraction <= 0:
        return df
    train = df[df["split"] == "train"]
    task = _task_key(train)
    for source, part in train.groupby("source", sort=True):
        groups = pd.DataFrame({"task": task[part.index], "label": part["label"].fillna("")})
        first = groups.drop_duplicates("task").set_index("task")["label"]
        n_dev = round(cfg.dev_fraction * len(first))
        if n_dev == 0 or n_dev >= len(first):
            continue
        dev_tasks = set(stratified_pick(first, n_dev, _source_seed(cfg.seed, str(source), "dev")))
        df.loc[groups.index[groups["task"].isin(dev_tasks)], "split"] = "dev"
    return df


def _counts(frame: pd.DataFrame) -> Counts:
    out: Counts = {}
    for (source, split), n in frame.groupby(["source", "split"], sort=True).size().items():
        out.setdefault(str(source), {})[str(split)] = int(n)
    return out


def _per_source(mask: pd.Series, sources: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in sources[mask].value_counts().sort_index().items() if v}


def curate(
    raw_df: pd.DataFrame, cfg: CurateConfig | None = None, rules: RuleScreen | None = None
) -> tuple[pd.DataFrame, CurationReport]:
    """Flag, drop (only `cfg.drop` rules), cap (tiny preset) and split; returns the curated table and its report.

    The curated table keeps the raw columns, with `split` in {train, dev, test}, plus `flags`: the comma-joined
    rules that fired on the row without dropping it. `rules` is `screen(raw_df, cfg)` when the caller has it.
    """
    cfg = cfg or CurateConfig()
    report = CurationReport(config=cfg.model_dump(mode="json"), rows_in=_counts(raw_df))
    df = raw_df.reset_index(drop=True)
    rules = rules or screen(df, cfg)
    flags = rules.flags
    for rule in RULES:
        report.flagged[rule] = _per_source(flags[rule], df["source"])
        sample = df.loc[flags[rule]].groupby("source", sort=False).head(SAMPLE_UIDS)  # every source shows its own
        report.samples[rule] = sample["uid"].astype(str).tolist()
        report.sample_values[rule] = {str(r["uid"]): rule_value(rule, r) for r in sample.to_dict("records")}
        if rule in cfg.drop:
            report.dropped[rule] = _per_source(rules.dropped_by == rule, df["source"])
    dropped_any = rules.dropped
    kept_rules = [r for r in RULES if r not in cfg.drop]
    df["flags"] = pd.Series(
        [",".join(r for r in kept_rules if row[r]) for row in flags[kept_rules].to_dict("records")],
        index=df.index,
        dtype="string",
    )
    df = df.loc[~dropped_any]
    if cfg.preset == "tiny":
        df = _cap(df, cfg, report)
    df = _carve_dev(df, cfg)
    order = {"train": 0, "dev": 1, "test": 2}
    df = df.assign(_o=df["split"].map(order)).sort_values(["source", "_o"], kind="stable").drop(columns="_o")
    df = df.reset_index(drop=True)
    report.rows_out = _counts(df)
    return df, report


def write_curated(df: pd.DataFrame, report: CurationReport, out_dir: Path) -> dict[str, Path]:
    """Write `curated.parquet`, `report.json` and `report.md` under `out_dir` (e.g. artifacts/curated)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "data": out_dir / "curated.parquet",
        "report_json": out_dir / "report.json",
        "report_md": out_dir / "report.md",
    }
    df.to_parquet(paths["data"], index=False)
    paths["report_json"].write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    paths["report_md"].write_text(report.to_markdown(), encoding="utf-8")
    return paths


def load_curated(out_dir: Path) -> pd.DataFrame:
    """The curated table written by `write_curated`."""
    return pd.read_parquet(Path(out_dir) / "curated.parquet")
