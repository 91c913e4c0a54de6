"""The report as markdown (the paper's Tables 3-7 with our numbers beside the published ones) and as HTML.

Table layout follows paper.md §8: each of our models gets a row, and the paper's row for the matching method
(`gtalign.evaluate.paper.paper_key`) sits right under it in italics; the paper's other methods follow. Cells hold
several numbers separated by " / " exactly where the paper's do.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gtalign.evaluate.metrics import ACTION_LABELS, METRICS, ModelEvaluation
from gtalign.evaluate.paper import PaperResults, load_paper_results, paper_key
from gtalign.evaluate.pareto import PairwiseComparison
from gtalign.evaluate.report.layout import (
    PAPER_ORDER,
    PAPER_TABLE_ORDER,
    T3_METRICS,
    T3_SOURCES,
    T4_COLUMNS,
    T4_OOD_COLUMNS,
    T5_SOURCES,
    T7_MATRIX,
    T7_OOD,
    source_name,
)


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
    head = ["Model", *(source_name(s) for s in T3_SOURCES)]
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
            ["Model", *(source_name(s) for s in PAPER_ORDER)],
            [
                [ev.model, *(_cell([_value(ev, s, "format"), _value(ev, s, "format_strict")]) for s in PAPER_ORDER)]
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
            ["Model", *(source_name(s) for s in PAPER_ORDER)],
            [[ev.model, *(_ci(ev, s, "welfare") for s in PAPER_ORDER)] for ev in evals],
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
                source_name(c.source),
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
    out.append(_game_section(evals))
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
                    source_name(s),
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
                        source_name(s),
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
                [ev.model, source_name(s), *(str(se.counts.get(k, 0)) for k in keys)]
                for ev in evals
                for s, se in ev.sources.items()
            ],
        )
    )
    reasons = [
        [ev.model, source_name(s), reason, str(n)]
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
                rows.append([ev.model, source_name(s), name, _num(est.value), ci, str(est.n)])
    out.append(_table(["Model", "Source", "Metric", "Value", "CI", "n"], rows))
    out.append("\nMetric definitions: " + "; ".join(f"`{k}` (T{t}) {d}" for k, (t, d) in METRICS.items()) + ".\n")
    return "\n\n".join(b.strip("\n") for b in out) + "\n"


def _game_section(evals: Sequence[ModelEvaluation]) -> str:
    """Does each model play the game: leave the direct-answer default where the prompt calls for it, act on the cell
    its analysis names, and name its own matrix's optimum? The per-label shares carry intervals, and the gap between
    the two labels of a source carries the interval of the difference (same resamples)."""
    out = ["\n## Does the assistant play the game? (beyond the paper)\n\n"]
    out.append(
        "Means over the in-domain sources (each weighs the same): *non-DA* = the response asks (CQ) or answers and "
        "asks (AQ) instead of a direct answer; *follows named cell* = the response does the action of the cell "
        "`<analyze>` names; *names own optimum* = `<analyze>` names the welfare optimum's action of the model's own "
        "`<payoff>` (Table 7's matrix_analyze).\n\n"
    )
    rows = []
    for ev in evals:
        s = ev.summary()
        rows.append(
            [ev.model] + [_num(s.get(f"{m}_mean_in_domain")) for m in ("non_da", "follows_named", "matrix_analyze")]
        )
    out.append(_table(["Model", "non-DA", "follows named cell", "names own optimum"], rows))
    out.append(
        "\nnon-DA share by label, with 95% intervals; *gap* = the label that calls for leaving the default "
        "(ambiguous; harmful) minus the other, with the interval of the difference:\n\n"
    )
    rows = []
    for ev in evals:
        for source, se in ev.sources.items():
            if "non_da_gap" not in se.metrics:
                continue
            by_label = [k for k in se.metrics if k.startswith("non_da_") and k != "non_da_gap"]
            shares = "; ".join(f"{k.removeprefix('non_da_')} {_ci(ev, source, k)}" for k in by_label)
            rows.append([ev.model, source_name(source), shares, _ci(ev, source, "non_da_gap")])
    out.append(_table(["Model", "Source", "non-DA by label", "gap"], rows))
    return "".join(out)


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
        f"*{source_name(source)}*",
        f"*paper: {paper.name(a)} vs {paper.name(b)}*",
        n,
        f"{_num(g('coverage_a'), 1, 100)}% vs {_num(g('coverage_b'), 1, 100)}%",
        f"{_num(g('hypervolume_a'))} vs {_num(g('hypervolume_b'))}",
        f"{_num(g('regret_a'))} vs {_num(g('regret_b'))}",
        dom,
    ]


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
