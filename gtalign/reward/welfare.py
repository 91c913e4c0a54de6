"""Aggregating user welfare U and LLM welfare L into the scalar reward.

cobb_douglas is GTAlign's sqrt(U*L) (U^a L^(1-a) for a != 1/2); linear, user and llm are the paper's baselines
(Table 5); ces is (a U^rho + (1-a) L^rho)^(1/rho), which tends to cobb_douglas as rho -> 0 (paper App. C.3).
"""

from __future__ import annotations

import math


def aggregate(user: float, llm: float, aggregation: str, *, alpha: float = 0.5, rho: float = -1.0) -> float:
    if aggregation == "cobb_douglas":
        return (user * llm) ** 0.5 if alpha == 0.5 else user**alpha * llm ** (1 - alpha)
    if aggregation == "linear":
        return (user + llm) / 2
    if aggregation == "user":
        return user
    if aggregation == "llm":
        return llm
    if aggregation == "ces":
        if user <= 0 or llm <= 0:
            return 0.0 if rho < 0 else (alpha * user**rho + (1 - alpha) * llm**rho) ** (1 / rho)
        return math.exp(math.log(alpha * user**rho + (1 - alpha) * llm**rho) / rho)
    raise ValueError(f"unknown aggregation {aggregation!r}; expected cobb_douglas, linear, user, llm or ces")
