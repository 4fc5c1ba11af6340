"""Compute time and real-time factor of several models on the same utterances, measured
interleaved."""

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from speedy.errors import SpeedyError
from speedy.runtime import Model
from speedy.specs import Feeds
from speedy.tasks import Task


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


def total_seconds(task: Task, model: Model, runs: Sequence[Feeds]) -> float:
    """Audio seconds the runs stand for (one pass of `model` tells)."""
    return sum(task.seconds(task.run(model, inputs)) for inputs in runs)


def round_seconds(
    models: Mapping[str, Model],
    task: Task,
    examples: Sequence[Any],
    repeats: int = 3,
    warmup: int = 1,
    outputs: dict[str, list[Feeds]] | None = None,
) -> dict[str, list[float]]:
    """The compute seconds of each model over the examples' whole utterances, one per round
    (`rtf_rounds`); `outputs`, when given, receives each model's outputs of the first round."""
    runs = [task.inputs(example) for example in examples]
    kept: dict[str, list[Feeds]] = {name: [] for name in models}
    runners = {name: _runner(task, model, kept[name], len(runs)) for name, model in models.items()}
    seconds = rtf_rounds(runners, runs, 1.0, repeats, warmup)
    if outputs is not None:
        outputs.update(kept)
    return seconds


def rtf_samples(
    models: Mapping[str, Model],
    task: Task,
    examples: Sequence[Any],
    repeats: int = 3,
    warmup: int = 1,
    outputs: dict[str, list[Feeds]] | None = None,
) -> dict[str, list[float]]:
    """The RTF of each model on the examples' whole utterances, one per round (`round_seconds`);
    a model whose outputs are not audio has none."""
    kept: dict[str, list[Feeds]] = {}
    seconds = round_seconds(models, task, examples, repeats, warmup, kept)
    audio_seconds = sum(task.seconds(result) for result in next(iter(kept.values())))
    if not audio_seconds:
        raise SpeedyError(
            f"a {task.name} model whose outputs are not audio has no real-time factor",
            "time it by latency (`round_seconds`, or `speedy bench`)",
        )
    if outputs is not None:
        outputs.update(kept)
    return {name: [s / audio_seconds for s in values] for name, values in seconds.items()}


def _runner(task: Task, model: Model, kept: list[Feeds], runs: int) -> Callable[[Feeds], object]:
    """`task.run` on `model`, keeping the outputs of the first `runs` calls."""

    def run(inputs: Feeds) -> Feeds:
        result = task.run(model, inputs)
        if len(kept) < runs:
            kept.append(result)
        return result

    return run


def rtf_rounds(
    runners: Mapping[str, Callable[[Feeds], object]],
    runs: Sequence[Feeds],
    audio_seconds: float,
    repeats: int = 3,
    warmup: int = 1,
) -> dict[str, list[float]]:
    """The RTF (compute seconds / audio seconds) of each runner over all `runs`, on every one of
    `repeats`.

    Runners take turns on every repeat, so machine noise spreads evenly over them and their
    ratios are fair even when absolute figures drift.
    """
    timings: dict[str, list[float]] = {name: [] for name in runners}
    for round_index in range(warmup + repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            for inputs in runs:
                run(inputs)
            if round_index >= warmup:
                timings[name].append((time.perf_counter() - start) / audio_seconds)
    return timings


def medians(samples: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """The median of each runner's RTFs (see `rtf_samples`)."""
    return {name: statistics.median(values) for name, values in samples.items()}
