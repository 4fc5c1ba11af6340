"""Two models chained: what the first makes, the second takes (text -> mel -> wave, say); or one
model that makes the wave itself (a text-to-wave voice).

    chain = Chain.load("build/sambert_zh_en/simplify", "build/hifigan_v1/simplify")
    result = chain(text="你好, world!", speaker=1, emotion="happy")
    write_audio("out.wav", result.audio, result.sample_rate); print(result.rtf())

Artifacts of any kind (torch, ONNX, quantized ONNX, ...) load through `speedy.runtime.load`; each
model's task says what it makes and takes, and the user controls the first one accepts.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from speedy import runtime
from speedy.audio.io import check_finite
from speedy.errors import SpeedyError, first_invalid
from speedy.model_spec import ModelSpec
from speedy.runtime import Model
from speedy.specs import Feeds
from speedy.tasks import chains, makes_audio, task_for
from speedy.tasks.capabilities import TakesControls


@dataclass
class Synthesis:
    """The waveform of one request, what the first model handed on, and each stage's seconds."""

    audio: np.ndarray
    sample_rate: int
    handed: np.ndarray  # e.g. the acoustic model's mel (n_mels, frames)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def audio_seconds(self) -> float:
        return self.audio.size / self.sample_rate

    def rtf(self) -> dict[str, float]:
        """Real-time factor of each stage and of the whole chain (compute / audio seconds)."""
        stages = {name: s / self.audio_seconds for name, s in self.seconds.items()}
        return stages | {"total": sum(self.seconds.values()) / self.audio_seconds}


def check_chain(first: ModelSpec, second: ModelSpec, where: tuple[Any, Any]) -> None:
    """Refuse a pair where the second model does not take what the first makes, or was
    trained on other audio features."""
    a, b = task_for(first), task_for(second)
    made, decoded = a.code_space(), b.code_space()
    if made and decoded and made != decoded:
        raise SpeedyError(
            f"{where[0]} makes {made} and {where[1]} decodes {decoded}: different code spaces",
            "pair a codes model with the codec its codes were made for",
        )
    if not chains(a, b):
        raise SpeedyError(
            f"{where[0]} is a {first.family} model ({a.consumes} -> {a.produces}) and {where[1]} "
            f"a {second.family} model ({b.consumes} -> {b.produces}): the second does not take "
            f"what the first makes",
            "chain a text-to-mel model (--acoustic) with a vocoder of its mels (--vocoder)",
        )
    x, y = first.audio, second.audio
    differ = [
        f"{name} {getattr(x, name)} vs {getattr(y, name)}"
        for name in type(x).model_fields
        if getattr(x, name) != getattr(y, name)
    ]
    if differ:
        raise SpeedyError(
            f"the models' mel spec differs: {', '.join(differ)}",
            "pair models trained on the same mel settings (sample rate, FFT, hop, mels, fmin/fmax)",
        )


class Chain:
    """Two loaded models, checked to fit: the first's outputs handed to the second (none when
    the first makes the audio)."""

    def __init__(self, first: Model, second: Model | None = None) -> None:
        self.first, self.second = first, second
        self.tasks = [task_for(first.manifest.model)]
        if second is None:
            if space := self.tasks[0].code_space():
                raise SpeedyError(
                    f"{first.path} makes speech codes ({space}), not audio",
                    "pass the codec of that code space with --vocoder",
                )
            if not makes_audio(self.tasks[0]):
                raise SpeedyError(
                    f"{first.path} makes {self.tasks[0].produces}, not audio",
                    "pass a vocoder of its mels with --vocoder",
                )
        else:
            check_chain(first.manifest.model, second.manifest.model, (first.path, second.path))
            self.tasks.append(task_for(second.manifest.model))
        self.sample_rate = (second or first).manifest.model.audio.sample_rate

    @classmethod
    def load(
        cls,
        first: str | Path,
        second: str | Path | None = None,
        device: str = "cpu",
        threads: int | None = None,
        verify: bool = True,
    ) -> "Chain":
        """Open the artifacts (directories or model files) on `device`."""
        paths = [first] if second is None else [first, second]
        return cls(*(runtime.load(p, device, threads, verify) for p in paths))

    def __call__(self, **controls: Any) -> Synthesis:
        """One request to the first model (its task's controls: text, speaker...)."""
        start = time.perf_counter()
        inputs = self.request(**controls)
        front_end = time.perf_counter() - start
        synthesis = self.speak(inputs)
        synthesis.seconds = {"front_end": front_end, **synthesis.seconds}
        return synthesis

    def request(self, **controls: Any) -> Feeds:
        """The first model's inputs for one request's controls (text, speaker...), each finite
        as the model takes it."""
        task = self.tasks[0]
        if not isinstance(task, TakesControls):
            raise SpeedyError(
                f"{self.first.path} is a {task.name} model: it takes no requests",
                "put a model that takes text first",
            )
        try:
            request = task.Controls.model_validate(controls)
        except ValidationError as exc:
            raise SpeedyError(
                f"{first_invalid(exc)} for a {task.name} model",
                f"give it what it takes: {', '.join(task.Controls.model_fields)}",
            ) from exc
        with np.errstate(over="ignore"):  # a value float32 cannot hold is refused below
            feeds = task.request(request)
        return {k: check_finite(v, f"the request's {k}", v.dtype) for k, v in feeds.items()}

    def speak(self, inputs: Feeds) -> Synthesis:
        """The waveform of the first model's inputs for one utterance, each model timed."""
        start = time.perf_counter()
        handed = self.handed(inputs)
        first = time.perf_counter() - start
        if self.second is None:  # the first model's wave
            return Synthesis(handed, self.sample_rate, handed, {"voice": first})
        seconds = {"acoustic": first}
        start = time.perf_counter()
        audio = self.vocode(handed)
        seconds["vocoder"] = time.perf_counter() - start
        return Synthesis(audio, self.sample_rate, handed, seconds)

    def handed(self, inputs: Feeds) -> Any:
        """What the first model hands the second for one utterance (e.g. its mel)."""
        (handed,) = self.tasks[0].handoff(self.tasks[0].run(self.first, inputs))
        return handed

    def handed_pieces(self, inputs: Feeds) -> Iterator[Any]:
        """What the first model hands the second for one utterance, piece by piece as it is
        made (a codes model's frames)."""
        return self.tasks[0].handoff_pieces(self.first, inputs)

    def vocode(self, handed: Any) -> np.ndarray:
        """The second model's waveform of what the first handed on."""
        task = self.tasks[1]
        assert self.second is not None
        waves = task.waveforms(task.run(self.second, task.chained_inputs(handed)))
        assert waves is not None  # `check_chain`: it makes audio
        return waves[0]
