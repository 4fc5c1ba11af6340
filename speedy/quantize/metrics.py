"""Which quality metrics a quantized model is judged by, and how a budget is checked.

Vocoders (families producing audio) are compared on the waveform with `speedy.quality`'s
length-tolerant metrics; other families with their own `Family.quality`.
"""

import importlib.util
import math
from collections.abc import Sequence

import numpy as np

from speedy.errors import SpeedyError
from speedy.families.base import Family
from speedy.quality import METRICS, Budget, compare, parse_budget

# The bar for a vocoder: PESQ-WB >= 4.0 against the float model's output.
DEFAULT_BUDGETS = {"pesq": "pesq>=4.0"}


def have_pesq() -> bool:
    return importlib.util.find_spec("pesq") is not None


def report_metrics(family: Family) -> list[str]:
    """What a quantized artifact's quality report holds for `family`."""
    if family.produces != "audio":
        return [family.quality_metric]
    return ["snr", "mel", "stft", *(["pesq"] if have_pesq() else [])]


def output_quality(
    family: Family,
    reference: dict[str, np.ndarray],
    test: dict[str, np.ndarray],
    metrics: Sequence[str],
) -> dict[str, float]:
    """`metrics` of one utterance's `test` outputs against the `reference` outputs. PESQ is NaN
    where it cannot be measured (no speech detected, e.g. a seeded untrained model's noise)."""
    if family.produces != "audio":
        scores = family.quality(reference, test)
        return {name: scores[name] for name in metrics}
    ref, tst, rate = family.waveform(reference), family.waveform(test), family.audio.sample_rate
    scores = compare(ref, tst, rate, [m for m in metrics if m != "pesq"])
    if "pesq" in metrics:
        try:
            scores["pesq"] = compare(ref, tst, rate, ["pesq"])["pesq"]
        except SpeedyError:
            scores["pesq"] = math.nan
    return {name: scores[name] for name in metrics}


def mean_quality(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """Each metric's mean over the rows that could measure it (NaN when none could)."""
    means = {}
    for name in rows[0]:
        values = [row[name] for row in rows if not math.isnan(row[name])]
        means[name] = float(np.mean(values)) if values else math.nan
    return means


def budgets_for(text: str | None, family: Family, required: bool) -> list[Budget]:
    """The parsed budget; the family's default when `text` is None and one is `required`."""
    if text is None:
        if not required:
            return []
        if family.quality_metric not in DEFAULT_BUDGETS:
            raise SpeedyError(
                f"no default quality budget for the {family.name} family",
                "pass --budget, e.g. 'mel<=0.1'",
            )
        text = DEFAULT_BUDGETS[family.quality_metric]
    budgets = parse_budget(text)
    usable = set(METRICS) if family.produces == "audio" else {family.quality_metric}
    if unusable := [b.metric for b in budgets if b.metric not in usable]:
        raise SpeedyError(
            f"the {family.name} family's quality is not measured by {unusable[0]}",
            f"budget on {', '.join(sorted(usable))}",
        )
    if "pesq" in (b.metric for b in budgets) and not have_pesq():
        raise SpeedyError("a PESQ budget needs the pesq package", "pip install 'openspeedy[eval]'")
    return budgets


def unmet(budgets: Sequence[Budget], scores: dict[str, float]) -> list[str]:
    """Each budget term `scores` misses, with the measured value."""
    missed = [b for b in budgets if not b.holds(scores[b.metric])]
    return [f"{b.metric} {scores[b.metric]:.3g} (needs {b})" for b in missed]
