"""Neural audio codec: an `encoder` graph (audio -> discrete codes) and a `decoder` graph (codes
-> audio), run one after the other; optionally a `decoder_step` graph that decodes a chunk of codes
with explicit state tensors, for streaming (`speedy.tasks.codec_stream`).

Graph contract: `encoder` takes `audio` float32 (batch, 1, samples) and gives `codes` int64
(batch, codebooks, frames), one frame per `samples_per_frame` samples; `decoder` takes `codes`
and gives `audio` float32 (batch, 1, frames * samples_per_frame). Examples are audio clips at the
model's rate, cut to whole frames; quality is the resynthesis against the reference's (the
length-tolerant audio metrics) and, where both encoders ran, how many codes agree.

Long audio: a clip longer than the graphs' `frames` range is encoded in chunks, each with the
`encoder_context` frames before it (the encoder's receptive field, which the family derives from
its layers), and decoded through `decoder_step` (whose state carries all the history, in bounded
memory) or, without one, in chunks with `decoder_context` frames before each. Both are exact: the
chunks give what the whole signal gives, up to float rounding. A family that states no context
gets whole-signal runs only.
"""

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import BaseModel

from speedy.audio.cache import FeatureCache
from speedy.audio.io import AUDIO_SUFFIXES, read_audio
from speedy.data_source import DEFAULT_CLIPS, audio_features, data_files
from speedy.errors import SpeedyError
from speedy.quality import AUDIO_METRICS, measure
from speedy.runtime import Model
from speedy.specs import DimRange, Feeds
from speedy.tasks.base import AudioOut, CodeSpace, Figures
from speedy.tasks.capabilities import Streams, TakesUploads
from speedy.tasks.codec_settings import AUDIO, CODES, CodecSettings, check_codes
from speedy.tasks.codec_stream import CodecStreamer

ENCODER, DECODER = "encoder", "decoder"
LONG_CHUNK = 250  # frames (20 s at 12.5 Hz) per chunk of a long encode or stateless decode
STEP_CHUNK = 25  # frames per decoder_step call when decoding long audio (2 s at 12.5 Hz)


def chunk_starts(frames: int, chunk: int) -> list[tuple[int, int]]:
    """(start, stop) of consecutive chunks of `chunk` frames covering `frames`."""
    return [(start, min(start + chunk, frames)) for start in range(0, frames, chunk)]


class Codec(AudioOut, Streams, TakesUploads):
    """Audio to codes to audio."""

    name: ClassVar[str] = "codec"
    Settings: ClassVar[type[BaseModel]] = CodecSettings
    consumes: ClassVar[str] = "audio"
    data_suffixes: ClassVar[tuple[str, ...]] = AUDIO_SUFFIXES
    data_kind: ClassVar[str] = "audio"
    metrics: ClassVar[dict[str, bool]] = AUDIO_METRICS | {"codes": True}
    report_metrics: ClassVar[tuple[str, ...]] = ("codes", "snr", "mel", "stft", "pesq")
    bench_metrics: ClassVar[tuple[str, ...]] = ("codes", "snr", "mel", "mcd", "pesq", "stoi")
    rank_by: ClassVar[str] = "mel"
    default_budget: ClassVar[str] = "pesq>=4.0"  # PESQ-WB of the resynthesis
    upload_kind: ClassVar[str] = "a WAV/FLAC/OGG file (resampled to the model's rate)"
    frame_unit: ClassVar[str] = "code frames"

    @property
    def codec(self) -> CodecSettings:
        assert isinstance(self.settings, CodecSettings)
        return self.settings

    @property
    def hop(self) -> int:
        return self.codec.samples_per_frame

    def twin_of(self, graph: str) -> str | None:
        return DECODER if graph == self.codec.step_graph else None

    def code_space(self) -> CodeSpace:
        rate = self.audio.sample_rate / self.hop
        return CodeSpace(self.codec.codebooks, self.codec.codebook_size, rate)

    @property
    def frame_range(self) -> DimRange | None:
        """The range of `frames` the whole-signal graphs take (None: not declared)."""
        return self.spec.dims.get("frames")

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

    def read_upload(self, data: bytes) -> np.ndarray:
        """An uploaded audio file at the model's rate, cut to whole frames."""
        self.check_duration(io.BytesIO(data))
        return self.frames(read_audio(io.BytesIO(data), self.audio.sample_rate, "the upload"))

    def read_data(self, source: Path, cache: FeatureCache) -> list[np.ndarray]:
        return audio_features(source, self.audio, cache, self.frames)

    @property
    def example_rate(self) -> float:
        """Examples are audio: samples per second."""
        return float(self.audio.sample_rate)

    def inputs(self, example: np.ndarray) -> Feeds:
        return {AUDIO: example[None, None].astype(np.float32)}

    def chained_inputs(self, handed: np.ndarray) -> Feeds:
        """A codes model's frames [codebooks, frames] (its codes to decode), else audio."""
        if handed.ndim == 2 and handed.dtype.kind == "i":
            return {CODES: handed[None].astype(np.int64)}
        return self.inputs(handed)

    def sized_inputs(self, examples: Sequence[np.ndarray], sizes: Mapping[str, int]) -> Feeds:
        """`batch` clips of `samples` samples (or `frames` whole frames where the model has no
        `samples` dim), cut in turn from the examples played end to end."""
        batch = sizes.get("batch", 1)
        samples = sizes["samples"] if "samples" in sizes else sizes["frames"] * self.hop
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

    # Running: whole signals, long ones in exact chunks.
    def run(self, model: Model, inputs: Feeds) -> Feeds:
        """The codes of the audio and the audio the decoder makes of them (given codes instead
        of audio: their audio). Longer than the graphs' `frames` range: in chunks."""
        codes = inputs[CODES] if AUDIO not in inputs and CODES in inputs else None
        if codes is None:
            codes = self.encode(model, inputs[AUDIO])
        return {CODES: codes, AUDIO: self.decode(model, codes)}

    def exercise(self, model: Model, inputs: Feeds) -> None:
        """`run`, then a few `decoder_step` calls on the codes (a long first chunk that fills the
        state, then short ones), so that the step graph is checked and calibrated on real
        states."""
        outputs = self.run(model, inputs)
        step = self.codec.step_graph
        if step is None or step not in model.graphs:
            return
        codes = outputs[CODES]
        limits = self.spec.dims.get("chunk", DimRange(min=1, opt=1, max=1))
        frames = codes.shape[-1]
        first = max(limits.min, min(limits.max, frames - 6, frames // 2))
        streamer = CodecStreamer(self, 1)
        state, start = streamer.start(model, codes.shape[0]), 0
        for size in (first, 1, 2, 3):
            size = max(limits.min, min(size, limits.max))
            if start + size > frames:
                break
            _, state = streamer.step(model, codes[..., start : start + size], state)
            start += size

    def encode(self, model: Model, audio: np.ndarray, chunk: int | None = None) -> np.ndarray:
        """Codes of audio (batch, 1, samples), samples a whole number of frames: one encoder
        call when it fits the graph's `frames` range (and no `chunk` is asked), else chunks of
        `chunk` frames, each encoded with `encoder_context` frames of audio before it."""
        frames, rest = divmod(audio.shape[-1], self.hop)
        if rest:
            raise SpeedyError(
                f"{audio.shape[-1]} samples are not a whole number of {self.hop}-sample frames",
                "cut the audio to whole frames (the task's front end does) or pad it",
            )
        limits = self.frame_range
        if chunk is None and (limits is None or frames <= limits.max):
            return model[ENCODER].run({AUDIO: audio})[CODES]
        context = self._context(self.codec.encoder_context, "encoder", frames)
        chunk = self._chunk(chunk, context)
        pieces = []
        for start, stop in chunk_starts(frames, chunk):
            begin = max(0, start - context)
            window = audio[..., begin * self.hop : stop * self.hop]
            pieces.append(model[ENCODER].run({AUDIO: window})[CODES][..., start - begin :])
        return np.concatenate(pieces, axis=-1)

    def decode(
        self,
        model: Model,
        codes: np.ndarray,
        chunk: int | None = None,
        stateful: bool | None = None,
    ) -> np.ndarray:
        """Audio (batch, 1, frames * samples_per_frame) of codes: one decoder call when they fit
        the graph's `frames` range (and no `chunk` is asked), else in chunks of `chunk` frames:
        through the step graph with its state (`stateful`; the default where the model has
        one), or each chunk decoded with `decoder_context` frames of codes before it."""
        check_codes(codes, self.codec)
        frames, limits = codes.shape[-1], self.frame_range
        if chunk is None and (limits is None or frames <= limits.max):
            return model[DECODER].run({CODES: codes})[AUDIO]
        step = self.codec.step_graph
        if stateful is None:
            stateful = step is not None and step in model.graphs
        if stateful:
            steps = self.spec.dims.get("chunk")
            size = chunk or STEP_CHUNK
            streamer = CodecStreamer(self, min(size, steps.max) if steps else size)
            return np.concatenate(list(streamer.chunks(model, codes)), axis=-1)
        context = self._context(self.codec.decoder_context, "decoder", frames)
        chunk = self._chunk(chunk, context)
        pieces = []
        for start, stop in chunk_starts(frames, chunk):
            begin = max(0, start - context)
            audio = model[DECODER].run({CODES: codes[..., begin:stop]})[AUDIO]
            pieces.append(audio[..., (start - begin) * self.hop :])
        return np.concatenate(pieces, axis=-1)

    def _context(self, context: int | None, graph: str, frames: int) -> int:
        if context is None:
            limits = self.frame_range
            raise SpeedyError(
                f"{frames} frames need a chunked {graph} run, but the model states no left "
                f"context for its {graph}",
                f"run at most {limits.max if limits else '?'} frames at a time",
            )
        return context

    def _chunk(self, chunk: int | None, context: int) -> int:
        """Frames per chunk: `chunk`, else LONG_CHUNK frames but at least the context (so
        that re-run context costs at most as much as the new frames), within the graph's range."""
        limits = self.frame_range
        room = limits.max - context if limits else None
        if room is not None and room < 1:
            raise SpeedyError(
                f"a chunk with {context} frames of left context exceeds the graphs' largest "
                f"frames ({limits.max if limits else '?'})",
                f"widen dims.frames above {context} and rebuild",
            )
        chunk = chunk or max(LONG_CHUNK, context)
        if chunk < 1:
            raise SpeedyError(f"chunk of {chunk} frames", "use at least one frame per chunk")
        return chunk if room is None else min(chunk, room)

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

    # Streaming and quantization defaults.
    def chunk_frames(self, seconds: float) -> int:
        """The number of frames closest to `seconds` of audio (at least one)."""
        if not seconds > 0:
            raise SpeedyError(f"chunk length must be positive, got {seconds} s", "pass e.g. 0.08")
        return max(1, round(seconds * self.audio.sample_rate / self.hop))

    @property
    def streams(self) -> bool:
        """Whether the family has a step graph to stream through."""
        return self.codec.step_graph is not None

    def streamer(self, chunk_seconds: float) -> CodecStreamer:
        """Streaming through the step graph with explicit state."""
        return CodecStreamer(self, self.chunk_frames(chunk_seconds))

    def float_tails(self, graph: str) -> list[str]:
        """The encoder's nearest-codebook search (distances, ArgMin, Gather, the residual) stays
        float: at reduced precision near ties flip codes."""
        return list(self.codec.float_tails.get(graph, []))
