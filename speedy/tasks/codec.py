"""Neural audio codec: an `encoder` graph (audio -> discrete codes) and a `decoder` graph (codes
-> audio), run one after the other.

Graph contract: `encoder` takes `audio` float32 (batch, 1, samples) and gives `codes` int64
(batch, codebooks, frames), one frame per `samples_per_frame` samples; `decoder` takes `codes`
and gives `audio` float32 (batch, 1, frames * samples_per_frame). Examples are audio clips at the
model's rate, cut to whole frames; quality is the resynthesis against the reference's (the
length-tolerant audio metrics) and, where both encoders ran, how many codes agree.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, PositiveInt

from speedy.audio.cache import FeatureCache
from speedy.audio.io import AUDIO_SUFFIXES
from speedy.data_source import DEFAULT_CLIPS, audio_features, data_files
from speedy.errors import SpeedyError
from speedy.quality import AUDIO_METRICS, measure
from speedy.runtime import Model
from speedy.specs import Feeds
from speedy.tasks.base import Figures, Task

AUDIO, CODES = "audio", "codes"


class CodecSettings(BaseModel):
    """How the codec frames audio and how many codes a frame holds."""

    model_config = ConfigDict(extra="forbid")

    samples_per_frame: PositiveInt
    codebooks: PositiveInt
    codebook_size: PositiveInt


class Codec(Task):
    """Audio to codes to audio."""

    name: ClassVar[str] = "codec"
    Settings: ClassVar[type[BaseModel]] = CodecSettings
    consumes: ClassVar[str] = "audio"
    produces: ClassVar[str] = "audio"
    data_suffixes: ClassVar[tuple[str, ...]] = AUDIO_SUFFIXES
    data_kind: ClassVar[str] = "audio"
    metrics: ClassVar[dict[str, bool]] = AUDIO_METRICS | {"codes": True}
    report_metrics: ClassVar[tuple[str, ...]] = ("codes", "snr", "mel", "stft", "pesq")
    bench_metrics: ClassVar[tuple[str, ...]] = ("codes", "snr", "mel", "mcd", "pesq", "stoi")
    rank_by: ClassVar[str] = "mel"
    default_budget: ClassVar[str | None] = "pesq>=4.0"  # PESQ-WB of the resynthesis

    @property
    def hop(self) -> int:
        assert isinstance(self.settings, CodecSettings)
        return self.settings.samples_per_frame

    @property
    def default_data(self) -> Path:
        return DEFAULT_CLIPS

    def frames(self, audio: np.ndarray) -> np.ndarray:
        """The front end: mono audio at the model's rate, cut to whole frames."""
        whole = audio.size // self.hop * self.hop
        if whole == 0:
            raise SpeedyError(
                f"{audio.size} samples hold no whole frame of {self.hop}",
                f"pass at least {self.hop / self.audio.sample_rate:.3f} s of audio",
            )
        return audio[:whole].astype(np.float32)

    def read_data(self, source: Path, cache: FeatureCache) -> list[np.ndarray]:
        return audio_features(source, self.audio, cache, self.frames)

    def inputs(self, example: np.ndarray) -> Feeds:
        return {AUDIO: example[None, None].astype(np.float32)}

    def sized_inputs(self, examples: Sequence[np.ndarray], sizes: Mapping[str, int]) -> Feeds:
        """`batch` clips of `samples` samples, cut in turn from the examples played end to end."""
        samples, batch = sizes["samples"], sizes.get("batch", 1)
        if samples % self.hop:
            raise SpeedyError(
                f"samples={samples} is not a whole number of {self.hop}-sample frames",
                f"use a multiple of {self.hop} (parity sizes, --shapes)",
            )
        stream = np.concatenate(list(examples))
        stream = np.tile(stream, -(-samples * batch // stream.size))
        items = [stream[i * samples : (i + 1) * samples] for i in range(batch)]
        return {AUDIO: np.stack(items)[:, None].astype(np.float32)}

    def recordings(self, source: Path, count: int) -> list[Path] | None:
        paths = data_files(source, self.data_suffixes, self.data_kind)
        return paths if len(paths) == count else None

    def run(self, model: Model, inputs: Feeds) -> Feeds:
        """The codes of the audio, and the audio the decoder makes of them."""
        codes = model["encoder"].run(inputs)[CODES]
        return {CODES: codes, AUDIO: model["decoder"].run({CODES: codes})[AUDIO]}

    def seconds(self, outputs: Feeds) -> float:
        return outputs[AUDIO].size / self.audio.sample_rate

    def waveforms(self, outputs: Feeds) -> list[np.ndarray]:
        return [item.reshape(-1) for item in outputs[AUDIO]]

    def compare(
        self,
        reference: Feeds,
        test: Feeds,
        metrics: Sequence[str],
        failures: list[str] | None = None,
    ) -> Figures:
        """`codes`: the share of codes that agree (where both outputs hold codes); the rest:
        audio metrics of the resynthesis, aligned first."""
        figures: Figures = {}
        if CODES in metrics and CODES in reference and CODES in test:
            same = reference[CODES].shape == test[CODES].shape
            figures[CODES] = float(np.mean(reference[CODES] == test[CODES])) if same else 0.0
        audio = [m for m in metrics if m != CODES]
        if audio and AUDIO in reference and AUDIO in test:
            ref, tst = (np.concatenate(self.waveforms(o)) for o in (reference, test))
            figures |= measure(ref, tst, self.audio.sample_rate, audio, failures)
        return {name: figures.get(name) for name in metrics}
