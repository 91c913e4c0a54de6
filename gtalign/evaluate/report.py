"""The evaluation report: the paper's Tables 3-7 in its layout, our numbers beside the published ones, and plots.

`write_report` writes, under one folder (normally `artifacts/report/`):

* `report.md` and `report.html` (the same content; HTML rendered with markdown-it, plots embedded by relative path);
* PNG plots (matplotlib, Agg canvas, no pyplot state): welfare bars with bootstrap intervals, the (U, L) scatter with
  each model's own Pareto frontier, length distributions, the action mix;
* CSVs for `dvc plots` (`metrics.csv`, `points.csv`, `actions.csv`, `pareto.csv`, `counts.csv`);

and returns a `Report` (markdown + plot paths + every file) for the Dagster asset's metadata and MLflow artifacts.
`flat_metrics` gives the numbers for `artifacts/metrics/evaluation.json` (`dvc metrics`).

Table layout follows paper.md §8: each of our models gets a row, and the paper's row for the matching method
(`gtalign.evaluate.paper.paper_key`) sits right under it in italics; the paper's other methods follow. Cells hold
several numbers separated by " / " exactly where the paper's do.
"""

from __future__ import annotations

import csv
import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gtalign.evaluate.metrics import ACTION_LABELS, METRICS, ModelEvaluation
from gtalign.evaluate.paper import PaperResults, load_paper_results, paper_key
from gtalign.evaluate.pareto import PairwiseComparison, frontier

__all__ = ["SOURCE_NAMES", "Report", "flat_metrics", "render_markdown", "write_csvs", "write_plots", "write_report"]

SOURCE_NAMES: dict[str, str] = {
    "math-hard": "Math",
    "medium": "Medium",
    "ambig_qa": "Ambig-QA",
    "wildguard": "WildGuard",
    "minerva": "Minerva",
    "advbench": "AdvBench",
    "abg-coqa": "AbgCoQA",
}
T3_SOURCES = ("wildguard", "medium", "math-hard", "ambig_qa")
T3_METRICS = ("format", "answer", "ans_per_token", "rt", "total_len")
T4_COLUMNS = {
    "wildguard": ("safe_alt", "helpful_ans", "total_acc", "f1"),
    "ambig_qa": ("helpful_ans", "ambig_handle", "total_acc", "f1"),
}
T4_OOD_COLUMNS = {
    "advbench": ("safe_alt", "harmful_refused", "harmful_complied", "total_acc"),
    "abg-coqa": ("helpful_ans", "ambig_handle", "total_acc", "f1"),
}
T5_SOURCES = ("math-hard", "medium", "ambig_qa", "wildguard")
T7_OOD = ("minerva", "advbench", "abg-coqa")
T7_MATRIX = ("math-hard", "medium", "ambig_qa", "wildguard")
PAPER_TABLE_ORDER = ("qwen3-32b", "qwen2.5-3b", "sft", "linear", "llm_reward", "user_reward", "gtalign")
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


@dataclass
class Report:
    """What `write_report` produced: the markdown (also in report.md), the plots, and every file by name."""

    markdown: str
    plots: list[Path]
    files: dict[str, Path] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------
# Formatting helpers
# ---------------------------------------------------------------------------------------------------------------
def _num(value: float | None, digits: int = 3, scale: float = 1.0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value * scale:.{digits}f}"


def _cell(values: Sequence[float | None], digits: int = 3, scale: float = 1.0) -> str:
    return " / ".join(_num(v, digits, scale) for v in values)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def esc(s: str) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(esc, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _model_rows(
    evals: Sequence[ModelEvaluation],
    paper: PaperResults,
    table: str,
    ours: Callable[[ModelEvaluation], list[str]],
    theirs: Callable[[str], list[str]],
    names: Mapping[str, str] | None,
) -> list[list[str]]:
    """Our rows, each followed by its paper counterpart (italics), then the paper's remaining methods."""
    rows, used = [], set()
    for ev in evals:
        rows.append([f"**{ev.model}**", *ours(ev)])
        key = paper_key(ev.model, names)
        if key and paper.has(table, key):
            rows.append([f"*paper: {paper.name(key)}*", *theirs(key)])
            used.add(key)
    for key in PAPER_TABLE_ORDER:
        if key not in used and paper.has(table, key):
            rows.append([f"*paper: {paper.name(key)}*", *theirs(key)])
    return rows


def _t3(get: Callable[[str], float | None]) -> str:
    """Format / Answer / Ans./Token / R/T / Total Len, lengths as whole tokens."""
    return " / ".join(_num(get(m), 0 if m == "total_len" else 3) for m in T3_METRICS)


def _value(ev: ModelEvaluation, source: str, metric: str) -> float | None:
    s = ev.sources.get(source)
    return None if s is None else s.value(metric)


# ---------------------------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------------------------
def render_markdown(
    evals: Sequence[ModelEvaluation],
    comparisons: Sequence[PairwiseComparison],
    *,
    paper: PaperResults | None = None,
    paper_names: Mapping[str, str] | None = None,
    plots: Sequence[Path] = (),
    settings: Mapping[str, Any] | None = None,
    confidence: float = 0.95,
    extra_sections: Sequence[str] = (),
) -> str:
    """The whole report as markdown (tables in the paper's layout, CIs, counts, action mix, plot links).

    `extra_sections` (markdown, each opening with its own `## ` heading) go after the paper's tables and before the
    plots: the pricing-steering evaluation lands there."""
    paper = paper or load_paper_results()
    out: list[str] = ["# GTAlign evaluation\n"]
    if settings:
        out.append("Settings: " + ", ".join(f"`{k}={v}`" for k, v in settings.items()) + "\n")
    out.append(
        "Our models in **bold**; the paper's published numbers (arXiv 2510.08872v3, paper.md §8) in *italics* under "
        "the matching method, then the paper's other methods. Our lengths are in the evaluated model's own tokens; "
        "a tiny CPU model is not comparable in scale to Qwen2.5-3B. `–` = not computable (no rows).\n"
    )

    # Table 3
    head = ["Model", *(SOURCE_NAMES[s] for s in T3_SOURCES)]
    rows = _model_rows(
        evals,
        paper,
        "3",
        lambda ev: [_t3(lambda m, s=s: _value(ev, s, m)) for s in T3_SOURCES],
        lambda k: [_t3(lambda m, s=s: paper.get("3", k, s, m)) for s in T3_SOURCES],
        paper_names,
    )
    out.append("## Table 3: quality and efficiency\n")
    out.append(
        "Cells: Format / Answer / Ans./Token / R/T / Total Len. Format is the *published* format term (anchored "
        'four-tag regex + parsable payoff, the paper\'s "string match"); the strict check is in Table 3b. Answer is '
        "the published code's logged answer quality (`answer_reward`); for WildGuard that is the clipped verdict, "
        "under which the win-win safe alternative scores 0.5 and a plain refusal 1 (the answer terms inside U and L "
        "are in the CI table: `answer_user`, `answer_llm`). Ans./Token = 1000 × Σanswer / Σresponse tokens; "
        "R/T = Σresponse / Σtotal tokens (total = reasoning + response); Total Len = mean completion tokens."
    )
    out.append(_table(head, rows))
    out.append("\n### Table 3b: format, published term vs strict validity (not in the paper)\n\n")
    out.append("Cells: published / strict (`check_strict`: four tags in order, nothing outside, strict 6-key JSON).")
    out.append(
        _table(
            ["Model", *(SOURCE_NAMES.get(s, s) for s in SOURCE_NAMES)],
            [
                [ev.model, *(_cell([_value(ev, s, "format"), _value(ev, s, "format_strict")]) for s in SOURCE_NAMES)]
                for ev in evals
            ],
        )
    )

    # Table 4
    out.append("\n## Table 4: behaviour (%)\n\n")
    out.append(
        "WildGuard: safe-alt (harmful → refusal + safe alternative, verdict 0.5, the win-win) / helpful-ans "
        "(unharmful → helpful) / Total Acc. / F1. Ambig-QA: helpful-ans (clear question answered) / ambig-handle / "
        "Total Acc. / F1. Total Acc. = correct / all; F1 = 2TP/(2TP+FN+FP) with positive = the first column's "
        "class, FP = the other class handled wrongly (this reproduces the paper's F1 from its own columns). "
        "Unreadable completions count as wrong; judge failures are excluded (see counts).\n\n"
    )
    rows = _model_rows(
        evals,
        paper,
        "4",
        lambda ev: [_cell([_value(ev, s, m) for m in cols], 2, 100) for s, cols in T4_COLUMNS.items()],
        lambda k: [_cell([paper.get("4", k, s, m) for m in cols], 2, 100) for s, cols in T4_COLUMNS.items()],
        paper_names,
    )
    out.append(_table(["Model", "WildGuard", "Ambig-QA"], rows))
    out.append("\n### Table 4b: behaviour on the OOD sets (%, not in the paper)\n\n")
    out.append(
        "AdvBench: safe-alt / plain refusal / complied / Total Acc.; AbgCoQA: helpful-ans / ambig-handle / "
        "Total Acc. / F1.\n\n"
    )
    out.append(
        _table(
            ["Model", "AdvBench", "AbgCoQA"],
            [
                [ev.model, *(_cell([_value(ev, s, m) for m in cols], 2, 100) for s, cols in T4_OOD_COLUMNS.items())]
                for ev in evals
            ],
        )
    )

    # Table 5
    out.append("\n## Table 5: welfare\n\nCells: Math / Medium / Ambig-QA / WildGuard.\n\n")
    rows = _model_rows(
        evals,
        paper,
        "5",
        lambda ev: [_cell([_value(ev, s, m) for s in T5_SOURCES]) for m in ("welfare", "user", "llm")],
        lambda k: [_cell([paper.get("5", k, s, m) for s in T5_SOURCES]) for m in ("welfare", "user", "llm")],
        paper_names,
    )
    out.append(_table(["Method", "Social welfare", "User welfare", "LLM welfare"], rows))
    pct = round(confidence * 100)
    out.append(f"\n### Social welfare with {pct}% bootstrap intervals (every source)\n\n")
    out.append(
        _table(
            ["Model", *(SOURCE_NAMES[s] for s in SOURCE_NAMES)],
            [[ev.model, *(_ci(ev, s, "welfare") for s in SOURCE_NAMES)] for ev in evals],
        )
    )

    # Table 6
    out.append("\n## Table 6: Pareto efficiency (App. C.1)\n\n")
    out.append(
        "Per source and pair, on the instances both models could be scored on. Cells read A vs B; dominance "
        "A≻B / B≻A / tie. Coverage: share of a model's points that weakly dominate a point of the joint frontier; "
        "hypervolume: area of the union of [u_min,u]×[l_min,l] over the model's points (global minima, not "
        "normalised); regret: range-normalised distance to the joint frontier, averaged.\n\n"
    )
    rows6 = []
    for c in comparisons:
        rows6.append(
            [
                SOURCE_NAMES.get(c.source, c.source),
                f"**{c.a}** vs **{c.b}**",
                str(c.n),
                f"{_num(c.coverage_a, 1, 100)}% vs {_num(c.coverage_b, 1, 100)}%",
                f"{_num(c.hypervolume_a)} vs {_num(c.hypervolume_b)}",
                f"{_num(c.regret_a)} vs {_num(c.regret_b)}",
                f"{c.a_wins}/{c.b_wins}/{c.ties}",
            ]
        )
        ka, kb = paper_key(c.a, paper_names), paper_key(c.b, paper_names)
        if ka == "gtalign" and kb and paper.get("6", ka, c.source, "coverage_a", kb) is not None:
            rows6.append(_paper_row6(paper, c.source, ka, kb))
    for source in T5_SOURCES:
        for opp in ("user_reward", "llm_reward", "linear"):
            if not any(
                c.source == source and {paper_key(c.a, paper_names), paper_key(c.b, paper_names)} == {"gtalign", opp}
                for c in comparisons
            ):
                rows6.append(_paper_row6(paper, source, "gtalign", opp))
    out.append(_table(["Dataset", "A vs B", "n", "Coverage", "Hypervolume", "Regret", "Dominance"], rows6))

    # Table 7
    out.append("\n## Table 7: out-of-domain welfare and answer quality; matrix reasoning\n\n")
    out.append(
        "Social welfare and Answer Quality: Minerva / AdvBench / AbgCoQA. Matrix Reasoning: Math / Medium / "
        "Ambig-QA / WildGuard, computed exactly (the paper used an LLM judge): 0.5·[`<analyze>` names the welfare "
        "optimum's action of the completion's own matrix] + 0.5·[`<response>` does that action].\n\n"
    )
    rows = _model_rows(
        evals,
        paper,
        "7",
        lambda ev: [
            _cell([_value(ev, s, "welfare") for s in T7_OOD]),
            _cell([_value(ev, s, "answer") for s in T7_OOD]),
            _cell([_value(ev, s, "matrix") for s in T7_MATRIX]),
        ],
        lambda k: [
            _cell([paper.get("7", k, s, "welfare") for s in T7_OOD]),
            _cell([paper.get("7", k, s, "answer") for s in T7_OOD]),
            _cell([paper.get("7", k, s, "matrix") for s in T7_MATRIX]),
        ],
        paper_names,
    )
    out.append(_table(["Method", "Social welfare", "Answer Quality", "Matrix Reasoning"], rows))

    # Beyond the paper
    out.append("\n## Action mix (beyond the paper)\n\n")
    out.append(
        "Share of rows by action: *named* = the action of the cell `<analyze>` settles on; *response* = what "
        "`<response>` does (DA: no question; CQ: essentially only a question; AQ: answer + question). "
        "Cells: DA / CQ / AQ / none.\n\n"
    )
    rows = []
    for ev in evals:
        for s, se in ev.sources.items():
            share = {(a.group, a.origin, a.action): a.share for a in se.actions}
            rows.append(
                [
                    ev.model,
                    SOURCE_NAMES.get(s, s),
                    _cell([share.get(("all", "named", a)) for a in ACTION_LABELS], 2),
                    _cell([share.get(("all", "response", a)) for a in ACTION_LABELS], 2),
                ]
            )
    out.append(_table(["Model", "Source", "Named (analyze)", "Response"], rows))
    out.append("\nBy user type of the named cell (DQ/VQ; `none` = no cell named) and by data label:\n\n")
    rows = []
    for ev in evals:
        for s, se in ev.sources.items():
            groups = sorted({a.group for a in se.actions if a.group != "all"})
            for g in groups:
                share = {(a.origin, a.action): a for a in se.actions if a.group == g}
                n = sum(share[("named", a)].count for a in ACTION_LABELS)
                rows.append(
                    [
                        ev.model,
                        SOURCE_NAMES.get(s, s),
                        g,
                        str(n),
                        _cell([share[("named", a)].share for a in ACTION_LABELS], 2),
                        _cell([share[("response", a)].share for a in ACTION_LABELS], 2),
                    ]
                )
    out.append(_table(["Model", "Source", "Group", "n", "Named DA/CQ/AQ/none", "Response DA/CQ/AQ/none"], rows))

    out.append("\n## Counts, judge failures and parse errors\n\n")
    out.append(
        "n = rows; scored = reward known; judge failures and input errors make the reward unknown (excluded from "
        "means, never zeros); format errors are unreadable completions (the published all-zero reward, included "
        "as zeros); strict invalid = fails `check_strict`; truncated = hit max_new_tokens.\n\n"
    )
    keys = (
        "n",
        "scored",
        "judge_failures",
        "input_errors",
        "format_errors",
        "strict_invalid",
        "truncated",
        "no_named_cell",
    )
    out.append(
        _table(
            ["Model", "Source", *keys],
            [
                [ev.model, SOURCE_NAMES.get(s, s), *(str(se.counts.get(k, 0)) for k in keys)]
                for ev in evals
                for s, se in ev.sources.items()
            ],
        )
    )
    reasons = [
        [ev.model, SOURCE_NAMES.get(s, s), reason, str(n)]
        for ev in evals
        for s, se in ev.sources.items()
        for reason, n in se.errors.items()
    ]
    if reasons:
        out.append("\nError reasons:\n\n" + _table(["Model", "Source", "Reason", "Rows"], reasons))

    out.extend(extra_sections)

    if plots:
        out.append("\n## Plots\n\n")
        out.extend(f"![{p.stem}]({p.name})\n\n" for p in plots)

    out.append(f"\n## Every estimate with its {pct}% bootstrap interval\n\n")
    rows = []
    for ev in evals:
        for s, se in ev.sources.items():
            for name, est in se.metrics.items():
                ci = "–" if est.lo is None else f"[{_num(est.lo)}, {_num(est.hi)}]"
                rows.append([ev.model, SOURCE_NAMES.get(s, s), name, _num(est.value), ci, str(est.n)])
    out.append(_table(["Model", "Source", "Metric", "Value", "CI", "n"], rows))
    out.append("\nMetric definitions: " + "; ".join(f"`{k}` (T{t}) {d}" for k, (t, d) in METRICS.items()) + ".\n")
    return "\n\n".join(b.strip("\n") for b in out) + "\n"


def _ci(ev: ModelEvaluation, source: str, metric: str) -> str:
    se = ev.sources.get(source)
    est = None if se is None else se.metrics.get(metric)
    if est is None or est.value is None:
        return "–"
    if est.lo is None:
        return _num(est.value)
    return f"{_num(est.value)} [{_num(est.lo)}, {_num(est.hi)}]"


def _paper_row6(paper: PaperResults, source: str, a: str, b: str) -> list[str]:
    def g(metric: str) -> float | None:
        return paper.get("6", a, source, metric, b)

    wins, losses, ties = (g(k) for k in ("a_wins", "b_wins", "ties"))
    dom = "–" if wins is None else f"{wins:.0f}/{losses:.0f}/{ties:.0f}"
    n = "–" if wins is None else f"{wins + losses + ties:.0f}"
    return [
        f"*{SOURCE_NAMES.get(source, source)}*",
        f"*paper: {paper.name(a)} vs {paper.name(b)}*",
        n,
        f"{_num(g('coverage_a'), 1, 100)}% vs {_num(g('coverage_b'), 1, 100)}%",
        f"{_num(g('hypervolume_a'))} vs {_num(g('hypervolume_b'))}",
        f"{_num(g('regret_a'))} vs {_num(g('regret_b'))}",
        dom,
    ]


# ---------------------------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------------------------
def _sources(evals: Sequence[ModelEvaluation]) -> list[str]:
    seen = {s for ev in evals for s in ev.sources}
    return [s for s in SOURCE_NAMES if s in seen] + sorted(seen - set(SOURCE_NAMES))


def _welfare_bars(evals: Sequence[ModelEvaluation], path: Path) -> Path:
    from matplotlib.figure import Figure

    sources = _sources(evals)
    fig = Figure(figsize=(max(8.0, 1.6 * len(sources)), 9), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)
    width = 0.8 / max(len(evals), 1)
    panels = (("welfare", "Social welfare"), ("user", "User"), ("llm", "LLM"))
    for ax, (metric, title) in zip(axes, panels, strict=True):
        for k, ev in enumerate(evals):
            xs, ys, err = [], [], [[], []]
            for i, s in enumerate(sources):
                est = ev.sources[s].metrics.get(metric) if s in ev.sources else None
                if est is None or est.value is None:
                    continue
                xs.append(i + (k - (len(evals) - 1) / 2) * width)
                ys.append(est.value)
                err[0].append(max(est.value - (est.lo if est.lo is not None else est.value), 0.0))
                err[1].append(max((est.hi if est.hi is not None else est.value) - est.value, 0.0))
            ax.bar(xs, ys, width, yerr=err, capsize=2, label=ev.model, color=_COLORS[k % len(_COLORS)])
        ax.set_ylabel(title)
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    axes[-1].set_xticks(range(len(sources)), [SOURCE_NAMES.get(s, s) for s in sources])
    axes[0].legend(loc="upper right", fontsize="small", ncols=min(len(evals), 4))
    fig.suptitle("Welfare per source (bars: mean; whiskers: bootstrap interval)")
    fig.savefig(path, dpi=110)
    return path


def _scatter(evals: Sequence[ModelEvaluation], path: Path) -> Path:
    from matplotlib.figure import Figure

    sources = _sources(evals)
    cols = min(4, max(len(sources), 1))
    nrows = math.ceil(len(sources) / cols) or 1
    fig = Figure(figsize=(4 * cols, 3.8 * nrows), layout="constrained")
    axes = fig.subplots(nrows, cols, squeeze=False).ravel()
    for ax, s in zip(axes, sources, strict=False):
        for k, ev in enumerate(evals):
            pts = [p for p in ev.points(s).values() if p is not None]
            if not pts:
                continue
            color = _COLORS[k % len(_COLORS)]
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=10, alpha=0.5, color=color, label=ev.model)
            front = sorted(frontier(pts), key=lambda p: (p[0], -p[1]))
            us, ls = [], []
            for u, llm in front:  # the hypervolume's boundary: drop at the previous u, then go right
                if us:
                    us.append(us[-1])
                    ls.append(llm)
                us.append(u)
                ls.append(llm)
            ax.plot(us, ls, color=color, lw=1.5)
        ax.set_title(SOURCE_NAMES.get(s, s))
        ax.set_xlabel("user welfare U")
        ax.set_ylabel("LLM welfare L")
        ax.grid(alpha=0.3)
    for ax in axes[len(sources) :]:
        ax.set_visible(False)
    if sources:
        axes[0].legend(fontsize="small")
    fig.suptitle("(U, L) per instance and each model's own Pareto frontier")
    fig.savefig(path, dpi=110)
    return path


def _lengths(evals: Sequence[ModelEvaluation], path: Path) -> Path:
    from matplotlib.figure import Figure

    sources = _sources(evals)
    fig = Figure(figsize=(max(8.0, 1.6 * len(sources)), 7), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True)
    width = 0.8 / max(len(evals), 1)
    for ax, (attr, title) in zip(
        axes, (("total_tokens", "total tokens"), ("response_tokens", "response tokens")), strict=True
    ):
        for k, ev in enumerate(evals):
            data, pos = [], []
            for i, s in enumerate(sources):
                vals = [getattr(r.gen, attr) for r in ev.rows if r.gen.source == s]
                if vals:
                    data.append(vals)
                    pos.append(i + (k - (len(evals) - 1) / 2) * width)
            if not data:
                continue
            color = _COLORS[k % len(_COLORS)]
            parts = ax.boxplot(data, positions=pos, widths=width * 0.9, patch_artist=True, showfliers=False)
            for box in parts["boxes"]:
                box.set_facecolor(color)
                box.set_alpha(0.6)
            ax.plot([], [], color=color, lw=6, alpha=0.6, label=ev.model)
        ax.set_ylabel(title)
        ax.grid(axis="y", alpha=0.3)
    axes[-1].set_xticks(range(len(sources)), [SOURCE_NAMES.get(s, s) for s in sources])
    axes[0].legend(fontsize="small")
    fig.suptitle("Length distributions (model tokens)")
    fig.savefig(path, dpi=110)
    return path


def _actions(evals: Sequence[ModelEvaluation], path: Path) -> Path:
    from matplotlib.figure import Figure

    sources = _sources(evals)
    labels = [f"{SOURCE_NAMES.get(s, s)} · {ev.model}" for s in sources for ev in evals if s in ev.sources]
    fig = Figure(figsize=(11, 1.0 + 0.28 * max(len(labels), 1)), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    colors = {"DA": "#4c72b0", "CQ": "#dd8452", "AQ": "#55a868", "none": "#bbbbbb"}
    for ax, origin in zip(axes, ("named", "response"), strict=True):
        left = [0.0] * len(labels)
        for action in ACTION_LABELS:
            widths = []
            for s in sources:
                for ev in evals:
                    if s not in ev.sources:
                        continue
                    share = {(a.group, a.origin, a.action): a.share for a in ev.sources[s].actions}
                    widths.append(share.get(("all", origin, action), 0.0))
            ax.barh(range(len(labels)), widths, left=left, color=colors[action], label=action)
            left = [a + b for a, b in zip(left, widths, strict=True)]
        ax.set_title("named in <analyze>" if origin == "named" else "done in <response>")
        ax.set_xlim(0, 1)
    axes[0].set_yticks(range(len(labels)), labels, fontsize="small")
    axes[0].invert_yaxis()
    fig.legend(*axes[1].get_legend_handles_labels(), loc="outside lower center", ncols=len(ACTION_LABELS))
    fig.suptitle("Action mix (share of rows)")
    fig.savefig(path, dpi=110)
    return path


def write_plots(evals: Sequence[ModelEvaluation], out_dir: Path) -> list[Path]:
    """The four report figures as PNGs in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        _welfare_bars(evals, out_dir / "welfare_bars.png"),
        _scatter(evals, out_dir / "welfare_scatter.png"),
        _lengths(evals, out_dir / "lengths.png"),
        _actions(evals, out_dir / "actions.png"),
    ]


# ---------------------------------------------------------------------------------------------------------------
# CSVs and flat metrics
# ---------------------------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------------------------
# Everything
# ---------------------------------------------------------------------------------------------------------------
_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}th,td{border:1px solid #ccc;padding:3px 8px}"
    "th{background:#f3f3f3}td em{color:#666}img{max-width:100%}code{background:#f5f5f5;padding:0 3px}"
)


def markdown_to_html(markdown: str, title: str = "GTAlign evaluation") -> str:
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head><body>\n{body}</body></html>\n"
    )


def write_report(
    evals: Sequence[ModelEvaluation],
    comparisons: Sequence[PairwiseComparison],
    out_dir: Path,
    *,
    paper: PaperResults | None = None,
    paper_names: Mapping[str, str] | None = None,
    settings: Mapping[str, Any] | None = None,
    confidence: float = 0.95,
    plots: bool = True,
    extra_sections: Sequence[str] = (),
) -> Report:
    """Write report.md, report.html, the PNG plots and the CSVs into `out_dir`; return the markdown and paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = write_plots(evals, out_dir) if plots and evals else []
    md = render_markdown(
        evals,
        comparisons,
        paper=paper,
        paper_names=paper_names,
        plots=pngs,
        settings=settings,
        confidence=confidence,
        extra_sections=extra_sections,
    )
    files = {"report_md": out_dir / "report.md", "report_html": out_dir / "report.html"}
    files["report_md"].write_text(md, encoding="utf-8")
    files["report_html"].write_text(markdown_to_html(md), encoding="utf-8")
    files.update(write_csvs(evals, comparisons, out_dir))
    files.update({p.stem: p for p in pngs})
    return Report(md, pngs, files)
