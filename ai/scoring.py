"""Rank the models that passed the filters: quality vs cost, plus measured latency and errors.

The task's complexity and the user's tier decide how much quality is worth against cost:
`need = (complexity + tier quality_bias) / 2`, quality weighs `4·need`, cost `4·(1 - need)`.
An outline for a premium user leans to the best model; a topic for a free user to the cheapest.
Latency and reliability (1 - EWMA error rate) always count, so a model that has started
failing or slowing down loses calls before its breaker has to open.

Cost and latency are scored relative to the best candidate on a log scale
(`1 / (1 + ln(x / best))`): twice the price costs about 40% of the cost score, twenty times
about 75%, so an expensive model can still win where quality matters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from ai.config import ModelEndpoint, Task

_MIN_WEIGHT = 0.2
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Scored:
    model: ModelEndpoint
    score: float
    parts: dict[str, float]


def weights(complexity: float, quality_bias: float) -> dict[str, float]:
    need = min(1.0, max(0.0, (complexity + quality_bias) / 2))
    return {
        "quality": max(_MIN_WEIGHT, 4 * need),
        "cost": max(_MIN_WEIGHT, 4 * (1 - need)),
        "latency": 1.0,
        "reliability": 2.0,
    }


def _relative(value: float, best: float) -> float:
    return 1.0 / (1.0 + math.log((value + _EPSILON) / (best + _EPSILON)))


def rank(
    candidates: Sequence[ModelEndpoint],
    *,
    task: Task,
    complexity: float,
    quality_bias: float,
    costs: Mapping[str, Decimal],
    latencies: Mapping[str, float],
    error_rates: Mapping[str, float],
) -> list[Scored]:
    """Candidates best first (ties broken by name, so the choice is deterministic)."""
    if not candidates:
        return []
    w = weights(complexity, quality_bias)
    best_cost = min(float(costs[m.name]) for m in candidates)
    best_latency = min(latencies[m.name] for m in candidates)
    scored = []
    for m in candidates:
        parts = {
            "quality": m.quality_for(task),
            "cost": _relative(float(costs[m.name]), best_cost),
            "latency": _relative(latencies[m.name], best_latency),
            "reliability": 1.0 - error_rates[m.name],
        }
        total = sum(w[k] * parts[k] for k in parts) / sum(w.values())
        scored.append(Scored(m, round(total, 6), {k: round(v, 4) for k, v in parts.items()}))
    scored.sort(key=lambda s: (-s.score, s.model.name))
    return scored
