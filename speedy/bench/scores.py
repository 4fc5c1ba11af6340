"""Quality of each artifact's outputs: DNSMOS on its own, the rest against the reference."""

from collections.abc import Mapping, Sequence

import numpy as np

from speedy.bench.dnsmos import Dnsmos
from speedy.bench.results import DNSMOS_FIGURES, REFERENCE_FIGURES
from speedy.console import notice
from speedy.errors import SpeedyError
from speedy.families.base import Family
from speedy.quality import compare

Figures = dict[str, float | None]


def dnsmos_figures(dnsmos: Dnsmos, audio: np.ndarray, sample_rate: int) -> dict[str, float]:
    scores = dnsmos.score(audio, sample_rate)
    values = (scores.sig, scores.bak, scores.ovrl, scores.p808)
    return dict(zip(DNSMOS_FIGURES, values, strict=True))


def _against(target: np.ndarray, wave: np.ndarray, sample_rate: int, where: str) -> Figures:
    """Each reference metric, or None (with a notice) where it cannot be computed: PESQ finds
    no speech in noise, for instance."""
    figures: Figures = {}
    for metric in REFERENCE_FIGURES:
        try:
            figures |= compare(target, wave, sample_rate, [metric])
        except SpeedyError as exc:
            notice(f"{metric} of {where}: {exc.problem}")
            figures[metric] = None
    return figures


def audio_quality(
    audio: Mapping[str, Sequence[np.ndarray]],
    reference: str,
    names: Sequence[str],
    sample_rate: int,
    dnsmos: Dnsmos,
) -> dict[str, list[Figures]]:
    """Per artifact and utterance: DNSMOS, plus PESQ/STOI/MCD/SNR/log-mel against the
    reference's audio of the same utterance (aligned first, so a few samples' difference in
    delay or length still compares)."""
    found: dict[str, list[Figures]] = {}
    for name, waves in audio.items():
        found[name] = []
        for index, wave in enumerate(waves):
            figures: Figures = {**dnsmos_figures(dnsmos, wave, sample_rate)}
            if name != reference:
                target = audio[reference][index]
                figures |= _against(target, wave, sample_rate, f"{name} on {names[index]}")
            found[name].append(figures)
    return found


def output_quality(
    outputs: Mapping[str, Sequence[dict[str, np.ndarray]]], reference: str, family: Family
) -> dict[str, list[Figures]]:
    """Per artifact and utterance, the family's own comparison with the reference's outputs
    (for models whose outputs are not audio, e.g. an acoustic model's mels)."""
    return {
        name: [
            {} if name == reference else family.quality(outputs[reference][index], output)
            for index, output in enumerate(items)
        ]
        for name, items in outputs.items()
    }


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
        values = [u[key] for u in per_utterance if u[key] is not None]
        found[key] = float(np.mean(values)) if values else None
    return found
