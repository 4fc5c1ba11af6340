"""Vocoder: a log-mel (batch, n_mels, frames) in, a waveform (batch, 1, samples) out.

Examples are the log-mels of audio files (the recipe's front end, cached by content hash) or
`.npy` mels; quality is measured on the waveform with length-tolerant audio metrics; it streams
in chunks with the network's receptive field as context (exact seams), which its family records.
"""

import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from speedy.audio.cache import FeatureCache
from speedy.audio.io import AUDIO_SUFFIXES
from speedy.audio.mel import log_mel
from speedy.data_source import (
    DEFAULT_CLIPS,
    audio_example,
    audio_features,
    data_files,
    read_array,
)
from speedy.errors import SpeedyError
from speedy.quality import AUDIO_METRICS
from speedy.runtime import Model
from speedy.specs import Feeds
from speedy.tasks.base import AudioOut
from speedy.tasks.capabilities import Streamer, Streams, TakesUploads
from speedy.tasks.streaming import Context, exact_window, stream_windows

MEL, AUDIO = "mel", "audio"  # the graph's input and output
NPY_MAGIC = b"\x93NUMPY"


class VocoderSettings(BaseModel):
    """The network's receptive field in mel frames (None: an artifact made before speedy
    recorded it)."""

    model_config = ConfigDict(extra="forbid")

    receptive_field: Context | None = None


class Vocoder(AudioOut, Streams, TakesUploads):
    """Mel to waveform."""

    name: ClassVar[str] = "vocoder"
    Settings: ClassVar[type[BaseModel]] = VocoderSettings
    consumes: ClassVar[str] = "mel"
    data_suffixes: ClassVar[tuple[str, ...]] = (*AUDIO_SUFFIXES, ".npy")
    data_kind: ClassVar[str] = "audio or .npy"
    metrics: ClassVar[dict[str, bool]] = AUDIO_METRICS
    report_metrics: ClassVar[tuple[str, ...]] = ("snr", "mel", "stft", "pesq")
    bench_metrics: ClassVar[tuple[str, ...]] = ("snr", "mel", "mcd", "pesq", "stoi")
    rank_by: ClassVar[str] = "mel"
    default_budget: ClassVar[str] = "pesq>=4.0"  # PESQ-WB against the float model
    upload_kind: ClassVar[str] = "a WAV/FLAC/OGG file, or a log-mel .npy"
    frame_unit: ClassVar[str] = "mel frames"

    @property
    def default_data(self) -> Path:
        return DEFAULT_CLIPS

    def features(self, audio: np.ndarray) -> np.ndarray:
        """The front end: mono audio at the model's rate -> log-mel (n_mels, frames)."""
        return log_mel(audio, self.audio)

    def read_data(self, source: Path, cache: FeatureCache) -> list[np.ndarray]:
        """Log-mels of the audio files, and the .npy mels ((n_mels, frames), or with a batch of
        one in front)."""
        return self.check_mels(audio_features(source, self.audio, cache, self.features), source)

    def check_mels(self, found: list[np.ndarray], source: object) -> list[np.ndarray]:
        """Log-mels (bins, frames), a batch of one in front dropped; a clear error for others."""
        mels = [f[0] if f.ndim == 3 and f.shape[0] == 1 else f for f in found]
        for mel in mels:
            if mel.ndim != 2 or mel.shape[1] == 0:
                raise SpeedyError(
                    f"a mel of shape {mel.shape} in {source}",
                    f"pass log-mels of shape ({self.audio.n_mels}, frames), frames >= 1, or "
                    "with a batch of one in front",
                )
        return mels

    def read_upload(self, data: bytes) -> np.ndarray:
        """The log-mel of an uploaded audio file (at any rate), or an uploaded .npy log-mel."""
        if data.startswith(NPY_MAGIC):
            (mel,) = self.check_mels([read_array(io.BytesIO(data), "the uploaded .npy")], "upload")
            return mel
        self.check_duration(io.BytesIO(data))
        return audio_example(io.BytesIO(data), self.audio.sample_rate, self.features, "the upload")

    def inputs(self, example: np.ndarray) -> Feeds:
        return {MEL: example[None].astype(np.float32)}

    def sized_inputs(self, examples: Sequence[np.ndarray], sizes: Mapping[str, int]) -> Feeds:
        """`batch` mels of `frames` frames, cut in turn from the examples played end to end."""
        frames, batch = sizes["frames"], sizes.get("batch", 1)
        stream = np.concatenate(list(examples), axis=1)
        stream = np.tile(stream, (1, -(-frames * batch // stream.shape[1])))
        mels = [stream[:, i * frames : (i + 1) * frames] for i in range(batch)]
        return {MEL: np.stack(mels).astype(np.float32)}

    def recordings(self, source: Path, count: int) -> list[Path] | None:
        paths = data_files(source, self.data_suffixes, self.data_kind)
        audio = all(p.suffix.lower() in AUDIO_SUFFIXES for p in paths)
        return paths if audio and len(paths) == count else None

    def run(self, model: Model, inputs: Feeds) -> Feeds:
        """The model's audio; a mel shorter than the model takes is padded with silence (the
        log floor) and its audio cut back to the mel's length."""
        mel = inputs[MEL]
        short = self.spec.dims["frames"].min - mel.shape[-1]
        if short <= 0:
            return model.run(inputs)
        floor = np.log(self.audio.log_clamp)
        padded = np.pad(mel, ((0, 0), (0, 0), (0, short)), constant_values=floor)
        audio = model.run({MEL: padded.astype(np.float32)})[AUDIO]
        return {AUDIO: audio[..., : mel.shape[-1] * self.audio.hop_length]}

    def chunk_frames(self, seconds: float) -> int:
        """The number of mel frames closest to `seconds` of audio (at least one)."""
        if not seconds > 0:
            raise SpeedyError(f"chunk length must be positive, got {seconds} s", "pass e.g. 0.25")
        return max(1, round(seconds * self.audio.sample_rate / self.audio.hop_length))

    @property
    def streams(self) -> bool:
        """Whether the model records its receptive field, the context streaming needs."""
        return self.receptive_field is not None

    @property
    def receptive_field(self) -> Context | None:
        """Mel frames each frame's audio depends on, as its family recorded them."""
        assert isinstance(self.settings, VocoderSettings)
        return self.settings.receptive_field

    def streamer(self, chunk_seconds: float) -> "VocoderStreamer":
        return VocoderStreamer(self, self.chunk_frames(chunk_seconds))


class VocoderStreamer(Streamer):
    """Chunks of `chunk` frames, each vocoded with `context` (default: the receptive field)."""

    def __init__(self, task: Vocoder, chunk: int, context: Context | None = None) -> None:
        context = context or task.receptive_field
        if context is None:
            raise SpeedyError(
                f"{task.spec.recipe} records no receptive field to stream with (made by an "
                "older speedy)",
                "export it again (`speedy run RECIPE`), or vocode whole utterances",
            )
        self.task, self.chunk, self.context = task, chunk, context
        self.limits = task.spec.dims["frames"]

    def stream(self, model: Model, inputs: Feeds | Iterable[Feeds]) -> Iterator[np.ndarray]:
        """The waveform of one run's inputs, or of consecutive pieces of them (as from an
        acoustic model that emits frames as it goes), chunk by chunk."""
        pieces = [inputs] if isinstance(inputs, Mapping) else inputs

        def run(window: np.ndarray) -> np.ndarray:
            return self.task.waveforms(model.run(self.task.inputs(window)))[0]

        mels = (piece[MEL][0] for piece in pieces)
        window = exact_window(model.only().graph.precision)
        return stream_windows(run, mels, self.chunk, self.context, self.limits, window)

    def describe(self) -> dict[str, int]:
        return {"chunk": self.chunk, "left": self.context.left, "right": self.context.right}
