"""Real-time factor of several sessions on the same utterances, measured interleaved."""

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from speedy.families.base import Family
from speedy.model_spec import ModelSpec
from speedy.runtime.base import Session


def call_seconds(run: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Wall seconds of each of `repeats` calls of `run`, after `warmup` untimed calls."""
    for _ in range(warmup):
        run()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return seconds


def total_seconds(
    family: Family, session: Session, utterances: Sequence[tuple[dict, float | None]]
) -> float:
    """Audio seconds of the utterances; where the inputs do not tell (a text-to-mel model's),
    one run of `session` does."""
    return sum(
        family.seconds(session.run(feeds)) if seconds is None else seconds
        for feeds, seconds in utterances
    )


def rtf_samples(
    sessions: Mapping[str, Session],
    spec: ModelSpec,
    features: Sequence[Any],
    repeats: int = 3,
    warmup: int = 1,
) -> dict[str, list[float]]:
    """The RTF of each session on the utterances of `features`, one per run (see `rtf_rounds`)."""
    family = spec.adapter()
    utterances = [family.utterance(f) for f in features]
    audio_seconds = total_seconds(family, next(iter(sessions.values())), utterances)
    return rtf_rounds(sessions, [feeds for feeds, _ in utterances], audio_seconds, repeats, warmup)


def rtf_rounds(
    sessions: Mapping[str, Session],
    runs: Sequence[Mapping[str, Any]],
    audio_seconds: float,
    repeats: int = 3,
    warmup: int = 1,
) -> dict[str, list[float]]:
    """The RTF (compute seconds / audio seconds) of each session over all `runs`, on every one of
    `repeats`.

    Sessions take turns on every repeat, so machine noise spreads evenly over them and
    their ratios are fair even when absolute figures drift.
    """
    timings: dict[str, list[float]] = {name: [] for name in sessions}
    for round_index in range(warmup + repeats):
        for name, session in sessions.items():
            start = time.perf_counter()
            for feeds in runs:
                session.run(feeds)
            if round_index >= warmup:
                timings[name].append((time.perf_counter() - start) / audio_seconds)
    return timings


def medians(samples: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """The median of each session's RTFs (see `rtf_samples`)."""
    return {name: statistics.median(values) for name, values in samples.items()}
