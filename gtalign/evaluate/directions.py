"""The paper's qualitative claims, checked on our own evaluation: does a run reproduce the paper's *directions*?

The tiny CPU preset cannot match the published numbers, but it should point the same way: SFT teaches the four-block
format, GTAlign's RL raises social welfare above the SFT model it starts from, and the Cobb-Douglas reward beats the
user-only and llm-only rewards (Table 5). Each claim is a comparison of two numbers from the flat evaluation metrics
(`artifacts/metrics/evaluation.json`); a claim whose models were not evaluated is reported as not checked, never as
passed. The evaluation stage writes the verdicts beside the metrics, the report shows them, the demo prints them and
the Dagster `paper_directions` asset check surfaces them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from gtalign.sources import IN_DOMAIN_SOURCES


@dataclass(frozen=True, slots=True)
class Direction:
    name: str
    claim: str
    value: float | None  # left-hand side of the claim (None: not evaluated)
    reference: float | None  # right-hand side
    holds: bool | None  # None: a model it needs was not evaluated
    interval: tuple[float, float] | None = None  # paired bootstrap interval of value - reference (same prompts)
    counts: bool = False  # value and reference count runs (the seed spread), not welfare

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _mean(metrics: Mapping[str, float], model: str, metric: str, sources: Sequence[str]) -> float | None:
    keys = [f"{model}/{s}/{metric}" for s in sources]
    if not all(k in metrics for k in keys):
        return None
    return sum(metrics[k] for k in keys) / len(keys)


def paired_interval(metrics: Mapping[str, float], a: str, b: str) -> tuple[float, float] | None:
    """The evaluation's paired interval of welfare(a) - welfare(b), whichever order the pair was stored in."""
    for x, y, sign in ((a, b, 1.0), (b, a, -1.0)):
        lo, hi = (metrics.get(f"paired/{x}-{y}/welfare_diff_{end}") for end in ("lo", "hi"))
        if lo is not None and hi is not None:
            return (lo, hi) if sign > 0 else (-hi, -lo)
    return None


def _compare(
    name: str,
    claim: str,
    value: float | None,
    reference: float | None,
    strict: bool,
    interval: tuple[float, float] | None = None,
) -> Direction:
    if value is None or reference is None:
        return Direction(name, claim, value, reference, None)
    return Direction(name, claim, value, reference, value > reference if strict else value >= reference, interval)


def paper_directions(
    metrics: Mapping[str, float],
    *,
    gtalign: str = "cobb_douglas",
    sft: str = "sft",
    baselines: Sequence[str] = ("user", "llm"),
    min_format_strict: float = 0.9,
    replicates: Mapping[str, Sequence[str]] | None = None,
) -> list[Direction]:
    """The claims in a fixed order. Welfare is the mean over every evaluated source (`<model>/welfare_mean`: the
    in-domain sets of Table 5 and the out-of-domain ones of Table 7); `directions_markdown` shows both parts.

    `replicates` (params.yaml `rl.replicates()`: GTAlign and its other RL seeds) adds the seed-spread claim when more
    than one seed was evaluated: one seed's win can be noise, so it holds only if most seeds beat SFT
    *significantly*."""
    in_domain = list(IN_DOMAIN_SOURCES)
    welfare = {m: metrics.get(f"{m}/welfare_mean") for m in (gtalign, sft, *baselines)}
    out = [
        _compare(
            "sft_format_validity",
            f"{sft}: strict four-block validity on the in-domain test prompts >= {min_format_strict:g}",
            _mean(metrics, sft, "format_strict", in_domain),
            min_format_strict,
            strict=False,
        ),
        _compare(
            f"{gtalign}_beats_{sft}",
            f"{gtalign} (GTAlign RL) social welfare > {sft} (its starting point), mean over sources",
            welfare[gtalign],
            welfare[sft],
            strict=True,
            interval=paired_interval(metrics, gtalign, sft),
        ),
    ]
    out += [
        _compare(
            f"{gtalign}_vs_{b}",
            f"{gtalign} social welfare >= the {b}-only reward baseline's, mean over sources",
            welfare[gtalign],
            welfare[b],
            strict=False,
            interval=paired_interval(metrics, gtalign, b),
        )
        for b in baselines
    ]
    seeds = list((replicates or {}).get(gtalign, ()))
    if sum(f"{s}/welfare_mean" in metrics for s in seeds) > 1:  # a run without the other seeds makes no seed claim
        out.append(_seed_spread(metrics, gtalign, sft, seeds))
    return out


def _seed_spread(metrics: Mapping[str, float], gtalign: str, sft: str, seeds: Sequence[str]) -> Direction:
    """How many of GTAlign's RL seeds beat SFT with a paired interval above 0; holds on a majority of the seeds."""
    need = len(seeds) // 2 + 1
    claim = f"{gtalign} beats {sft} significantly (paired interval above 0) on >= {need} of {len(seeds)} RL seeds"
    intervals = [paired_interval(metrics, s, sft) for s in seeds]
    if any(i is None for i in intervals):
        return Direction(f"{gtalign}_beats_{sft}_across_seeds", claim, None, float(need), None, counts=True)
    wins = sum(lo > 0 for lo, _ in intervals)  # type: ignore[misc]
    return Direction(f"{gtalign}_beats_{sft}_across_seeds", claim, float(wins), float(need), wins >= need, counts=True)


def directions_markdown(
    directions: Sequence[Direction],
    metrics: Mapping[str, float] | None = None,
    replicates: Mapping[str, Sequence[str]] | None = None,
    sft: str = "sft",
) -> str:
    """The verdicts as a table; with `metrics`, each evaluated model's welfare split into in-domain and OOD means,
    and each replicated variant's seed spread (every seed against `sft`, with its paired interval)."""

    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.4f}"

    def side(d: Direction, x: float | None) -> str:
        return f"{x:.0f} seeds" if d.counts and x is not None else fmt(x)

    def gap(d: Direction) -> str:
        if d.value is None or d.reference is None or d.counts:
            return "n/a"
        ci = "" if d.interval is None else f" [{d.interval[0]:+.4f}, {d.interval[1]:+.4f}]"
        return f"{d.value - d.reference:+.4f}{ci}"

    verdict = {True: "holds", False: "**does not hold**", None: "not checked (model not evaluated)"}
    lines = [
        "## The paper's directions on this run",
        "",
        "The difference's interval is a paired bootstrap over the same prompts (resampled within each source): "
        "where it straddles 0, the direction is within this evaluation's noise.",
        "",
        "| claim | value | reference | difference [interval] | verdict |",
        "|---|---|---|---|---|",
        *(
            f"| {d.claim} | {side(d, d.value)} | {side(d, d.reference)} | {gap(d)} | {verdict[d.holds]} |"
            for d in directions
        ),
    ]
    models = [k.removesuffix("/welfare_mean") for k in (metrics or {}) if k.endswith("/welfare_mean")]
    if models:
        lines += [
            "",
            "| model | welfare, all sources | in-domain (Table 5) | out-of-domain (Table 7) |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {m} | {fmt(metrics.get(f'{m}/welfare_mean'))} | {fmt(metrics.get(f'{m}/welfare_mean_in_domain'))} "
            f"| {fmt(metrics.get(f'{m}/welfare_mean_ood'))} |"
            for m in models
        ]
    for variant, seeds in (replicates or {}).items():
        rows = [(s, (metrics or {}).get(f"{s}/welfare_mean"), paired_interval(metrics or {}, s, sft)) for s in seeds]
        rows = [r for r in rows if r[1] is not None]
        if len(rows) < 2:
            continue
        values = [w for _, w, _ in rows]
        lines += [
            "",
            f"Seed spread of {variant} ({len(rows)} RL seeds): welfare {min(values):.4f} to {max(values):.4f} "
            f"(range {max(values) - min(values):.4f}).",
            "",
            f"| seed run | welfare | minus {sft} [paired interval] |",
            "|---|---|---|",
        ]
        for name, w, ci in rows:
            ref = (metrics or {}).get(f"{sft}/welfare_mean")
            diff = "n/a" if ref is None else f"{w - ref:+.4f}"
            lines.append(f"| {name} | {w:.4f} | {diff}{'' if ci is None else f' [{ci[0]:+.4f}, {ci[1]:+.4f}]'} |")
    return "\n".join(lines) + "\n"


def directions_summary(directions: Sequence[Direction]) -> tuple[bool, str]:
    """Whether every checked claim holds, and one line saying how many do and which do not."""
    checked = [d for d in directions if d.holds is not None]
    failed = [d.name for d in checked if not d.holds]
    line = f"{len(checked) - len(failed)} of {len(checked)} checked directions hold"
    return not failed, line + (f"; not holding: {', '.join(failed)}" if failed else "")


def directions_metrics(directions: Sequence[Direction]) -> dict[str, float]:
    """Flat `directions/<name>` = 1.0 / 0.0 for the checked claims (what DVC and MLflow record)."""
    return {f"directions/{d.name}": float(d.holds) for d in directions if d.holds is not None}
