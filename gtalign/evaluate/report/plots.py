"""The report's figures as PNGs (matplotlib's Agg canvas, no pyplot state): welfare bars with bootstrap intervals,
the (U, L) scatter with each model's own Pareto frontier, length distributions and the action mix."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gtalign.evaluate.metrics import ACTION_LABELS, ModelEvaluation
from gtalign.evaluate.pareto import frontier
from gtalign.evaluate.report.layout import evaluated_sources, source_name

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _save(fig: Figure, title: str, path: Path) -> Path:
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    return path


def _welfare_bars(evals: Sequence[ModelEvaluation], path: Path) -> Path:
    from matplotlib.figure import Figure

    sources = evaluated_sources(evals)
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
    axes[-1].set_xticks(range(len(sources)), [source_name(s) for s in sources])
    axes[0].legend(loc="upper right", fontsize="small", ncols=min(len(evals), 4))
    return _save(fig, "Welfare per source (bars: mean; whiskers: bootstrap interval)", path)


def _scatter(evals: Sequence[ModelEvaluation], path: Path) -> Path:
    from matplotlib.figure import Figure

    sources = evaluated_sources(evals)
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
        ax.set_title(source_name(s))
        ax.set_xlabel("user welfare U")
        ax.set_ylabel("LLM welfare L")
        ax.grid(alpha=0.3)
    for ax in axes[len(sources) :]:
        ax.set_visible(False)
    if sources:
        axes[0].legend(fontsize="small")
    return _save(fig, "(U, L) per instance and each model's own Pareto frontier", path)


def _lengths(evals: Sequence[ModelEvaluation], path: Path) -> Path:
    from matplotlib.figure import Figure

    sources = evaluated_sources(evals)
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
    axes[-1].set_xticks(range(len(sources)), [source_name(s) for s in sources])
    axes[0].legend(fontsize="small")
    return _save(fig, "Length distributions (model tokens)", path)


def _actions(evals: Sequence[ModelEvaluation], path: Path) -> Path:
    from matplotlib.figure import Figure

    sources = evaluated_sources(evals)
    labels = [f"{source_name(s)} · {ev.model}" for s in sources for ev in evals if s in ev.sources]
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
    return _save(fig, "Action mix (share of rows)", path)


def write_plots(evals: Sequence[ModelEvaluation], out_dir: Path) -> list[Path]:
    """The four report figures as PNGs in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        _welfare_bars(evals, out_dir / "welfare_bars.png"),
        _scatter(evals, out_dir / "welfare_scatter.png"),
        _lengths(evals, out_dir / "lengths.png"),
        _actions(evals, out_dir / "actions.png"),
    ]
