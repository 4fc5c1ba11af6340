"""Quality of each artifact's outputs: DNSMOS of its audio, the rest against the reference's."""

from collections.abc import Mapping, Sequence

import numpy as np

from speedy.bench.dnsmos import Dnsmos
from speedy.bench.results import DNSMOS_FIGURES
from speedy.console import notice
from speedy.specs import Feeds
from speedy.tasks import Figures, Task


def dnsmos_figures(dnsmos: Dnsmos, audio: np.ndarray, sample_rate: int) -> dict[str, float]:
    scores = dnsmos.score(audio, sample_rate)
    values = (scores.sig, scores.bak, scores.ovrl, scores.p808)
    return dict(zip(DNSMOS_FIGURES, values, strict=True))


def dnsmos_quality(
    audio: Mapping[str, Sequence[np.ndarray]], sample_rate: int, dnsmos: Dnsmos
) -> dict[str, list[Figures]]:
    """Per artifact and utterance: DNSMOS of its audio."""
    return {
        name: [dnsmos_figures(dnsmos, wave, sample_rate) for wave in waves]
        for name, waves in audio.items()
    }


def against(
    task: Task,
    outputs: Mapping[str, Sequence[Feeds]],
    reference: str,
    compared: set[str],
    names: Sequence[str],
) -> dict[str, list[Figures]]:
    """Per artifact in `compared` and utterance, the task's bench figures of its outputs against
    the reference's outputs of the same utterance (none for the others); a figure that cannot
    be computed (PESQ finding no speech in noise, say) is None, with a notice."""
    found: dict[str, list[Figures]] = {}
    for name, items in outputs.items():
        found[name] = []
        for index, output in enumerate(items):
            if name not in compared:
                found[name].append({})
                continue
            failures: list[str] = []
            expected = outputs[reference][index]
            found[name].append(task.compare(expected, output, task.bench_metrics, failures))
            for failure in failures:
                notice(f"{name} on {names[index]}: {failure}")
    return found


def merged(
    first: Mapping[str, Sequence[Figures]], second: Mapping[str, Sequence[Figures]]
) -> dict[str, list[Figures]]:
    """Per artifact and utterance, the figures of both (`second`'s where both have one)."""
    return {
        name: [a | b for a, b in zip(items, second[name], strict=True)]
        for name, items in first.items()
    }


def means(per_utterance: Sequence[Mapping[str, float | None]]) -> Figures:
    """The mean of each figure over the utterances where it could be computed (else None)."""
    found: Figures = {}
    for key in per_utterance[0] if per_utterance else ():
        values = [u[key] for u in per_utterance if u.get(key) is not None]
        found[key] = float(np.mean(values)) if values else None
    return found
