"""Pareto metrics between methods over per-instance (user welfare, LLM welfare) points: the paper's App. C.1.

Formulas exactly as App. C.1 writes them (paper.md §7); `S` is the multiset of all points of the compared methods:

* **Dominance**: a ≻ b ⇔ u_a ≥ u_b ∧ l_a ≥ l_b ∧ (u_a > u_b ∨ l_a > l_b) (`gtalign.game.dominates`), counted per
  test instance (A≻B / B≻A / tie, where "tie" is everything else: equal points and incomparable ones, so the three
  counts sum to n).
* **Frontier**: F = {(u, l) ∈ S : ∄ (u', l') ∈ S with u' > u and l' > l} (strict in *both* coordinates, as
  written: a point beaten in one coordinate and equal in the other stays on F).
* **Coverage** of a method M: (1/|S_M|) Σ_{(u,l) ∈ S_M} 1[∃ (u*, l*) ∈ F: u ≥ u*, l ≥ l*] (F the joint frontier of
  S; summing over all of S would give both methods the same number, and the paper's table gives each its own).
* **Hypervolume** of M: area(∪_{(u,l) ∈ F_M} [u_min, u] × [l_min, l]), with u_min, l_min the global minima over S
  and F_M M's own frontier (the union over all of M's points is the same area; the joint F would give both methods
  one number). Not range-normalised, as written; `normalize=True` divides by (u_max-u_min)(l_max-l_min).
* **Regret**: r(u, l) = min_{(u*, l*) ∈ F} max((u*-u)/(u_max-u_min), (l*-l)/(l_max-l_min), 0); AvgReg = mean of r
  over M's points. A zero range makes its term 0 (every point has the same value in that coordinate).

The published code (`experiments/pareto_ratio.py`) computes coverage with an ε-tolerance instead, so its numbers
differ from C.1's; we implement C.1. Pure functions over plain tuples, O(n log n) except regret (O(n·|F|)).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from gtalign.game import Payoff, dominates

Point = tuple[float, float]  # (user welfare, LLM welfare)

__all__ = [
    "Bounds",
    "PairwiseComparison",
    "Point",
    "bounds",
    "compare",
    "coverage",
    "dominance_counts",
    "frontier",
    "hypervolume",
    "regret",
    "regrets",
]


def frontier(points: Iterable[Point]) -> list[Point]:
    """The points of `points` that no other point beats strictly in both coordinates (duplicates kept), sorted.

    One sweep in decreasing u: a point is off the frontier iff some point with a strictly larger u has a strictly
    larger l, i.e. iff its l is below the maximum l seen among strictly larger u values.
    """
    pts = sorted(points, key=lambda p: (-p[0], -p[1]))
    out: list[Point] = []
    best_l_above = float("-inf")  # max l over points with strictly larger u
    i = 0
    while i < len(pts):
        j = i
        while j < len(pts) and pts[j][0] == pts[i][0]:
            j += 1
        group = pts[i:j]
        out.extend(p for p in group if not p[1] < best_l_above)
        best_l_above = max(best_l_above, group[0][1])  # the group is sorted by decreasing l
        i = j
    return sorted(out)


@dataclass(frozen=True, slots=True)
class Bounds:
    u_min: float
    u_max: float
    l_min: float
    l_max: float

    @property
    def du(self) -> float:
        return self.u_max - self.u_min

    @property
    def dl(self) -> float:
        return self.l_max - self.l_min


def bounds(points: Iterable[Point]) -> Bounds:
    """Global min/max over S in each coordinate (App. C.1 normalises by these)."""
    pts = list(points)
    if not pts:
        raise ValueError("bounds of an empty point set")
    us, ls = [p[0] for p in pts], [p[1] for p in pts]
    return Bounds(min(us), max(us), min(ls), max(ls))


def coverage(points: Sequence[Point], front: Sequence[Point]) -> float:
    """Share of `points` that weakly dominate some frontier point (u ≥ u*, l ≥ l*)."""
    if not points:
        raise ValueError("coverage of an empty point set")
    hit = sum(1 for p in points if any(p[0] >= f[0] and p[1] >= f[1] for f in front))
    return hit / len(points)


def hypervolume(points: Iterable[Point], ref: Point, *, scale: Point = (1.0, 1.0)) -> float:
    """Area of ∪ [ref_u, u] × [ref_l, l] over `points` (divided by scale_u·scale_l); points at or below ref add 0.

    Sweep in decreasing u keeping the running max of l: each slab between consecutive distinct u values has height
    (max l among points to its right) - ref_l.
    """
    pts = sorted((p for p in points if p[0] > ref[0] and p[1] > ref[1]), key=lambda p: -p[0])
    area, top = 0.0, ref[1]
    for k, (u, llm) in enumerate(pts):
        top = max(top, llm)
        next_u = pts[k + 1][0] if k + 1 < len(pts) else ref[0]
        area += (u - next_u) * (top - ref[1])
    return area / (scale[0] * scale[1])


def _term(gap: float, span: float) -> float:
    return gap / span if span > 0 else 0.0


def regrets(points: Sequence[Point], front: Sequence[Point], b: Bounds) -> list[float]:
    """Per-point range-normalised regret against the frontier (0 for a frontier point)."""
    if not front:
        raise ValueError("regret against an empty frontier")
    return [min(max(_term(f[0] - p[0], b.du), _term(f[1] - p[1], b.dl), 0.0) for f in front) for p in points]


def regret(points: Sequence[Point], front: Sequence[Point], b: Bounds) -> float:
    """AvgReg: the mean of `regrets`."""
    rs = regrets(points, front, b)
    if not rs:
        raise ValueError("regret of an empty point set")
    return sum(rs) / len(rs)


def dominance_counts(a: Sequence[Point], b: Sequence[Point]) -> tuple[int, int, int]:
    """Per-instance (A≻B, B≻A, tie) over paired points a[i], b[i]."""
    if len(a) != len(b):
        raise ValueError(f"paired points differ in length: {len(a)} vs {len(b)}")
    pa, pb = ([Payoff(llm=llm, user=u) for u, llm in points] for points in (a, b))
    wins = sum(dominates(p, q) for p, q in zip(pa, pb, strict=True))
    losses = sum(dominates(q, p) for p, q in zip(pa, pb, strict=True))
    return wins, losses, len(a) - wins - losses


@dataclass(frozen=True)
class PairwiseComparison:
    """Table 6 for one source and one pair of methods, on the instances both could be scored on."""

    source: str
    a: str
    b: str
    n: int  # paired instances used
    excluded: int  # instances present for either method but without a known point for both
    coverage_a: float
    coverage_b: float
    hypervolume_a: float
    hypervolume_b: float
    regret_a: float
    regret_b: float
    a_wins: int
    b_wins: int
    ties: int
    frontier_size: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(
    source: str,
    a_name: str,
    a: Mapping[str, Point | None],
    b_name: str,
    b: Mapping[str, Point | None],
    *,
    normalize_hypervolume: bool = False,
) -> PairwiseComparison | None:
    """All App. C.1 metrics for methods A and B keyed by instance id; None when no instance is known for both.

    Only instances where both methods have a known point enter (unknown welfare, e.g. a failed judge call, is
    excluded and counted in `excluded`), so S, F and the dominance counts are over the same prompts.
    """
    keys = sorted(k for k in a.keys() & b.keys() if a[k] is not None and b[k] is not None)
    excluded = len(a.keys() | b.keys()) - len(keys)
    if not keys:
        return None
    pa = [tuple(map(float, a[k])) for k in keys]
    pb = [tuple(map(float, b[k])) for k in keys]
    s = pa + pb
    bd = bounds(s)
    front = frontier(s)
    ref = (bd.u_min, bd.l_min)
    scale = (bd.du or 1.0, bd.dl or 1.0) if normalize_hypervolume else (1.0, 1.0)
    wins, losses, ties = dominance_counts(pa, pb)
    return PairwiseComparison(
        source=source,
        a=a_name,
        b=b_name,
        n=len(keys),
        excluded=excluded,
        coverage_a=coverage(pa, front),
        coverage_b=coverage(pb, front),
        hypervolume_a=hypervolume(frontier(pa), ref, scale=scale),
        hypervolume_b=hypervolume(frontier(pb), ref, scale=scale),
        regret_a=regret(pa, front, bd),
        regret_b=regret(pb, front, bd),
        a_wins=wins,
        b_wins=losses,
        ties=ties,
        frontier_size=len(front),
    )
