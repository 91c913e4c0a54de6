"""Per-source reward normalisation: pure functions over one batch of rewards grouped by data source.

Why: the sources' reward scales differ (a math answer is 0/1, a writing draft lands on a 0-4 scale mapped to [0, 1],
safety verdicts sit on 0/0.5/1), so in a mixed batch one source can dominate the advantage. The published mixed-data
run (`full_zscore.sh`) z-scores the reward per source before PPO/GAE. These functions do that (and three variants)
for whatever batch the trainer hands the reward adapter.

Conventions, the same for every method:

* `None` (a judge failure: the reward is unknown) stays `None` and is left out of its group's statistics; NaN is
  treated like `None`.
* A group is the set of rows sharing a `groups` key (the data source); statistics never cross groups.
* A degenerate group (one value, or all values equal) maps to the method's neutral value -- 0 for the z-scores,
  0.5 for min-max and rank -- instead of dividing by zero: with no spread there is nothing to prefer.

Note for GRPO: its advantage is already computed within a group of completions of ONE prompt (hence one source).
An affine per-source transform (z-score, min-max, robust z) then changes nothing when `scale_rewards="group"`
(mean and std of the group move with it); it matters with `scale_rewards="batch"` or `"none"`, or for an
advantage estimator that mixes prompts (the paper's PPO/GAE). `rank` is not affine and changes GRPO's advantages
under every setting.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from typing import Literal

Method = Literal["none", "zscore", "minmax", "robust_z", "rank"]
METHODS: tuple[str, ...] = ("none", "zscore", "minmax", "robust_z", "rank")
MAD_TO_STD = 1.4826  # MAD x 1.4826 estimates the standard deviation of a normal distribution


def _no_spread(scale: float, values: list[float]) -> bool:
    """A spread at rounding level (0.7, 0.7, 0.7 has a float std of ~1e-16) counts as none."""
    return scale <= 1e-12 * max(1.0, max(abs(v) for v in values))


def _zscore(values: list[float]) -> list[float]:
    mean = statistics.fmean(values)
    std = statistics.pstdev(values, mean) if len(values) > 1 else 0.0
    return [0.0] * len(values) if _no_spread(std, values) else [(v - mean) / std for v in values]


def _minmax(values: list[float]) -> list[float]:
    lo, hi = min(values), max(values)
    return [0.5 if hi == lo else (v - lo) / (hi - lo) for v in values]


def _robust_z(values: list[float]) -> list[float]:
    """(x - median) / (1.4826 MAD); when more than half the values are equal (MAD 0), the population std instead."""
    med = statistics.median(values)
    scale = MAD_TO_STD * statistics.median(abs(v - med) for v in values)
    if _no_spread(scale, values):
        scale = statistics.pstdev(values) if len(values) > 1 else 0.0
    return [0.0] * len(values) if _no_spread(scale, values) else [(v - med) / scale for v in values]


def _rank(values: list[float]) -> list[float]:
    """Average ranks (ties share their mean rank) scaled to [0, 1]: (rank - 1) / (n - 1)."""
    n = len(values)
    if n == 1:
        return [0.5]
    order = sorted(range(n), key=values.__getitem__)
    ranks = [0.0] * n
    i = 0
    while i < n:
        j = i
        while j + 1 < n and values[order[j + 1]] == values[order[i]]:
            j += 1
        mean_rank = (i + j) / 2  # 0-based mean rank of the tie block i..j
        for k in range(i, j + 1):
            ranks[order[k]] = mean_rank / (n - 1)
        i = j + 1
    return ranks


_FUNCS: dict[str, Callable[[list[float]], list[float]]] = {
    "zscore": _zscore,
    "minmax": _minmax,
    "robust_z": _robust_z,
    "rank": _rank,
}


def normalize(
    values: Sequence[float | None], groups: Sequence[Hashable], method: Method | str = "zscore"
) -> list[float | None]:
    """Normalise `values` within each group of `groups` (same length); `None`/NaN stay `None`.

    >>> normalize([1.0, 3.0, 10.0, None], ["a", "a", "b", "b"], "zscore")
    [-1.0, 1.0, 0.0, None]
    """
    if len(values) != len(groups):
        raise ValueError(f"values and groups differ in length: {len(values)} != {len(groups)}")
    if method == "none":
        return [None if v is None or math.isnan(v) else float(v) for v in values]
    if method not in _FUNCS:
        raise ValueError(f"unknown normalisation {method!r}; expected one of {', '.join(METHODS)}")
    members: dict[Hashable, list[int]] = defaultdict(list)
    for i, (v, g) in enumerate(zip(values, groups, strict=True)):
        if v is not None and not math.isnan(v):
            members[g].append(i)
    out: list[float | None] = [None] * len(values)
    for idx in members.values():
        for i, z in zip(idx, _FUNCS[method]([float(values[i]) for i in idx]), strict=True):
            out[i] = z
    return out


def zscore(values: Sequence[float | None], groups: Sequence[Hashable]) -> list[float | None]:
    return normalize(values, groups, "zscore")


def minmax(values: Sequence[float | None], groups: Sequence[Hashable]) -> list[float | None]:
    return normalize(values, groups, "minmax")


def robust_z(values: Sequence[float | None], groups: Sequence[Hashable]) -> list[float | None]:
    return normalize(values, groups, "robust_z")


def rank(values: Sequence[float | None], groups: Sequence[Hashable]) -> list[float | None]:
    return normalize(values, groups, "rank")


__all__ = ["METHODS", "Method", "minmax", "normalize", "rank", "robust_z", "zscore"]
