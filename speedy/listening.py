"""What each artifact of a run sounds like: PESQ-WB of its audio against the reference model's
(the run's first artifact), DNSMOS of its own, and a verdict in words."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from speedy.console import notice
from speedy.errors import SpeedyError
from speedy.specs import Feeds
from speedy.tasks import Task

# PESQ-WB (1 to 4.64) of a copy against its original: where listeners stop hearing a difference,
# and where the difference becomes plain (3.0 is "fair").
TRANSPARENT, DEGRADED = 4.0, 3.0
DNSMOS_DROP = 0.1  # OVRL points below the reference that count as a loss of naturalness
# DNSMOS OVRL below which audio is not taken for speech: white noise scores about 1.1, the
# shipped LJSpeech clips 3.0-3.4, the real HiFi-GAN V1's resynthesis of them about 3.1.
SPEECH_OVRL = 2.0


@dataclass(frozen=True)
class Heard:
    """One artifact's audio figures: means over the run's examples (None: not computed)."""

    pesq: float | None  # against the reference model's audio; None for the reference
    dnsmos: float | None  # DNSMOS OVRL (1 to 5) of its own audio

    def verdict(self, reference: "Heard", seeded: bool = False) -> str:
        """In words, how this artifact compares with the reference: PESQ against it, and an
        absolute check of its own audio (DNSMOS), without which no audio "sounds the same"
        (PESQ of two noises that match scores high). `seeded`: the weights are random, so the
        words speak of a seeded model."""
        if self.pesq is None:
            return "-"
        if self.dnsmos is None:
            return (
                f"PESQ-WB {self.pesq:.2f} against the reference, not checked as speech (no DNSMOS)"
            )
        if self.dnsmos < SPEECH_OVRL:
            return (f"not speech-like (DNSMOS {self.dnsmos:.2f}"
                    f"{', seeded weights' if seeded else ''}): PESQ-WB {self.pesq:.2f} only "
                    "compares it with the reference")  # fmt: skip
        words = (
            "sounds the same"
            if self.pesq >= TRANSPARENT
            else "audibly different"
            if self.pesq >= DEGRADED
            else "degraded"
        )
        if reference.dnsmos is not None and reference.dnsmos - self.dnsmos > DNSMOS_DROP:
            words += f", DNSMOS {reference.dnsmos - self.dnsmos:.2f} lower"
        return f"{words} (relative to a seeded model)" if seeded else words


def listen(outputs: Mapping[str, Sequence[Feeds]], task: Task, threads: int) -> dict[str, Heard]:
    """The audio figures of every model's outputs of the same runs; the first model is the
    reference."""
    reference = next(iter(outputs))
    dnsmos = _dnsmos(task, outputs, threads)
    heard = {}
    for name, items in outputs.items():
        pesq = None
        if name != reference:
            failures: list[str] = []
            scores = [
                task.compare(expected, output, ["pesq"], failures)["pesq"]
                for expected, output in zip(outputs[reference], items, strict=True)
            ]
            for failure in failures:
                notice(f"{name}: {failure}")
            pesq = _mean(scores)
        heard[name] = Heard(pesq, dnsmos.get(name))
    return heard


def noise_at_equal_snr(
    outputs: Mapping[str, Sequence[Feeds]], task: Task, name: str, seed: int = 0
) -> dict[str, float | None]:
    """What PESQ means where the audio is not speech: the reference's audio plus seeded white
    noise at the SNR `name`'s audio has against it, scored like `name` (two noises that match
    score high, so a high PESQ of such audio is no verdict). Means over the runs."""
    from speedy.quality import measure

    rng = np.random.default_rng(seed)
    rate, snrs, scores = task.audio.sample_rate, [], []
    for expected, output in zip(next(iter(outputs.values())), outputs[name], strict=True):
        reference, test = (np.concatenate(task.waveforms(o)) for o in (expected, output))
        snr = measure(reference, test, rate, ["snr"])["snr"]
        if snr is None or not np.isfinite(snr):
            continue
        power = np.mean(reference.astype(np.float64) ** 2) / 10 ** (snr / 10)
        noisy = (reference + rng.standard_normal(reference.shape) * np.sqrt(power)).astype(
            np.float32
        )
        snrs.append(snr)
        scores.append(measure(reference, noisy, rate, ["pesq"])["pesq"])
    return {"snr_db": _mean(snrs), "pesq": _mean(scores)}


def _dnsmos(
    task: Task, outputs: Mapping[str, Sequence[Feeds]], threads: int
) -> dict[str, float | None]:
    """DNSMOS OVRL per model (empty, with a notice, without the DNSMOS models)."""
    from speedy.bench.dnsmos import Dnsmos  # onnxruntime sessions, loaded only here

    try:
        scorer = Dnsmos(threads)
        return {
            name: _mean(
                [
                    scorer.score(wave, task.audio.sample_rate).ovrl
                    for output in items
                    for wave in task.waveforms(output) or []
                ]
            )
            for name, items in outputs.items()
        }
    except SpeedyError as exc:
        notice(f"no DNSMOS in the summary: {exc.problem} ({exc.fix})")
        return {}


def _mean(values: Sequence[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return float(np.mean(found)) if found else None
