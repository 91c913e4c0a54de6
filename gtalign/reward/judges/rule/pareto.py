"""The ablation's Pareto-consistency check of an `<analyze>` block: 1 / 0.5 / 0.

1 if the action the analysis settles on ("choose/optimal/best/select ... AQ") or, if none is stated, any action it
names is the action part of a ground-truth Pareto cell; 0.5 if it settles on another action but names a correct one,
or only describes a correct one in words ("clarifying question"); else 0.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_ACTION_RE = re.compile(r"(?<![A-Za-z])(?:[DV]Q[_\s/-]?)?(DA|CQ|AQ)(?![A-Za-z])")
_CHOICE_RE = re.compile(
    r"(?i:choose|chose|chosen|choosing|select|selected|selecting|pick|picked|go\s+with|going\s+with|recommend|"
    r"recommended|optimal|best|final|decision|strategy|therefore|thus|hence|so\s+we|→|=>|->)"
    r"[^.\n]{0,60}?(?<![A-Za-z])(?:[DV]Q[_\s/-]?)?(DA|CQ|AQ)(?![A-Za-z])"
)
_ACTION_WORDS = {
    "CQ": re.compile(r"(?i)clarif"),
    "DA": re.compile(r"(?i)direct(?:ly)?\s+answer|answer\s+directly"),
    "AQ": re.compile(r"(?i)answer\s+(?:and|\+|with|plus)\s+(?:a\s+)?(?:follow-?up|question)|follow-?up\s+question"),
}


def pareto_verdict(analysis: str, frontier: Iterable[str]) -> float:
    """The Pareto-consistency prompt's 1 / 0.5 / 0 for an `<analyze>` block and the true Pareto cell keys."""
    truth = {str(k).strip().upper().rsplit("_", 1)[-1] for k in frontier}
    chosen = [m.group(1) for m in _CHOICE_RE.finditer(analysis)]
    named = {m.group(1) for m in _ACTION_RE.finditer(analysis)}
    if chosen:
        if chosen[-1] in truth:
            return 1.0
        return 0.5 if named & truth else 0.0
    if named & truth:
        return 1.0
    return 0.5 if any(_ACTION_WORDS[a].search(analysis) for a in truth if a in _ACTION_WORDS) else 0.0
