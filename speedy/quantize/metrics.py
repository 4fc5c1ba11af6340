"""Means of quality figures over examples, and which budget terms they miss."""

import math
from collections.abc import Mapping, Sequence

import numpy as np

from speedy.quality import Budget

Figures = Mapping[str, float | None]


def mean_quality(rows: Sequence[Figures]) -> dict[str, float | None]:
    """Each metric's mean over the rows that could measure it (None when none could)."""
    means: dict[str, float | None] = {}
    for name in rows[0] if rows else ():
        values = [v for row in rows if (v := row[name]) is not None and not math.isnan(v)]
        means[name] = float(np.mean(values)) if values else None
    return means


def unmet(budgets: Sequence[Budget], scores: Figures) -> list[str]:
    """Each budget term `scores` misses, with the measured value (unmeasured never meets one)."""
    missed = [b for b in budgets if not b.holds(scores.get(b.metric))]
    return [f"{b.metric} {_shown(scores.get(b.metric))} (needs {b})" for b in missed]


def _shown(value: float | None) -> str:
    return "unmeasured" if value is None else f"{value:.3g}"
