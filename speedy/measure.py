"""Real-time factor of several sessions on the same utterances, measured interleaved."""

import statistics
import time
from collections.abc import Mapping, Sequence

import numpy as np

from speedy.model_spec import ModelSpec
from speedy.runtime.base import Session


def measure_rtf(
    sessions: Mapping[str, Session],
    spec: ModelSpec,
    features: Sequence[np.ndarray],
    repeats: int = 3,
    warmup: int = 1,
) -> dict[str, float]:
    """Median over `repeats` of (compute seconds / audio seconds) for each session.

    Sessions take turns on every repeat, so machine noise spreads evenly over them and
    their ratios are fair even when absolute figures drift.
    """
    family = spec.adapter()
    utterances = [family.utterance(f) for f in features]
    audio_seconds = sum(seconds for _, seconds in utterances)
    timings: dict[str, list[float]] = {name: [] for name in sessions}
    for round_index in range(warmup + repeats):
        for name, session in sessions.items():
            start = time.perf_counter()
            for feeds, _ in utterances:
                session.run(feeds)
            if round_index >= warmup:
                timings[name].append((time.perf_counter() - start) / audio_seconds)
    return {name: statistics.median(values) for name, values in timings.items()}
