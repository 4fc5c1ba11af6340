"""Text to mel: an acoustic model (Sambert/FastSpeech2-style), multi-speaker, multi-emotion.

Graph contract. Inputs (dims batch, tokens, ref_frames): `tokens` int64 (batch, tokens) symbol ids
of the model's vocabulary, 0-padded; `token_lengths` int64 (batch,); `speaker` int64 (batch,);
`emotion` int64 (batch,), an index into the emotion labels or -1 for "from the reference";
`reference_mel` float32 (batch, n_mels, ref_frames), a log-mel of a reference clip (one
floor-valued frame when the emotion is a label); `speed` float32 (batch,), durations are divided
by it; `pitch_shift` float32 (batch,) in semitones. Outputs: `mel` float32 (batch, n_mels,
frames), frames past `mel_lengths` int64 (batch,) hold the log floor (silence).

Examples are sentences (one per line of .txt files), each said with a speaker, an emotion (every
label, then a reference clip, in turn) and a reference clip; quality compares mels; the mels are
handed to a vocoder (`speedy synth`, `speedy bench --vocoder`).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import soundfile as sf
from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from speedy.audio.cache import FeatureCache
from speedy.audio.io import AUDIO_SUFFIXES
from speedy.audio.mel import log_mel
from speedy.console import notice
from speedy.data_source import (
    DEFAULT_CLIPS,
    TEXT_SUFFIXES,
    audio_example,
    audio_features,
    text_lines,
)
from speedy.errors import SpeedyError
from speedy.specs import Feeds
from speedy.tasks.base import Figures
from speedy.tasks.capabilities import PitchShift, Speed, TakesRequests
from speedy.text import TextFrontEnd, vocabulary

DEFAULT_TEXTS = Path(str(files("speedy") / "data" / "calibration" / "eval_texts_zh_en.txt"))
REFERENCE_EMOTION = -1  # emotion id meaning "take the emotion from the reference mel"
PARITY_SPEEDS = (1.0, 0.8, 1.25)
PARITY_PITCH_SHIFTS = (0.0, 2.0, -3.0)


class TextToMelSettings(BaseModel):
    """What the model was trained with: its symbols, speakers and emotion labels."""

    model_config = ConfigDict(extra="forbid")

    vocabulary: str
    n_speakers: PositiveInt
    emotions: list[str] = Field(min_length=1)


class SpeechRequest(BaseModel):
    """What a served request may ask: text, speaker, an emotion label, speed and pitch shift."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    text: str
    speaker: int = 0
    emotion: str | None = None
    speed: Speed = 1.0
    pitch_shift: PitchShift = 0.0


class SpeechControls(SpeechRequest):
    """What one request may ask from the command line or Python: a request, or the emotion of a
    reference clip (a file, or its log-mel) instead of a label."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, arbitrary_types_allowed=True)

    reference: Path | np.ndarray | None = None


@dataclass(frozen=True)
class TextExample:
    """One sentence of a data source, with the speaker, emotion and reference clip to say it."""

    where: str  # file:line
    text: str
    tokens: np.ndarray  # int64 (symbols,)
    reference: np.ndarray  # float32 (n_mels, frames): log-mel of a real clip
    speaker: int
    emotion: int  # index into `emotions`, or REFERENCE_EMOTION


class TextToMel(TakesRequests):
    """Text (with speaker, emotion and prosody controls) to log-mel frames."""

    name: ClassVar[str] = "text_to_mel"
    Settings: ClassVar[type[BaseModel]] = TextToMelSettings
    Controls: ClassVar[type[BaseModel]] = SpeechControls
    Request: ClassVar[type[BaseModel]] = SpeechRequest
    consumes: ClassVar[str] = "text"
    produces: ClassVar[str] = "mel"
    handed: ClassVar[tuple[str, str]] = ("mel", "mel_lengths")  # outputs: padded mels, lengths
    data_suffixes: ClassVar[tuple[str, ...]] = TEXT_SUFFIXES
    data_kind: ClassVar[str] = "text (.txt)"
    metrics: ClassVar[dict[str, bool]] = {"mel": False, "frames_diff": False}
    report_metrics: ClassVar[tuple[str, ...]] = ("mel",)
    bench_metrics: ClassVar[tuple[str, ...]] = ("mel", "frames_diff")
    rank_by: ClassVar[str] = "mel"
    default_budget: ClassVar[str] = "mel<=0.3"  # log-mel distance against the float model

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        settings = self.settings
        assert isinstance(settings, TextToMelSettings)
        self.s = settings
        self.front_end = TextFrontEnd(vocabulary(settings.vocabulary))
        self.floor = float(np.log(self.audio.log_clamp))

    @property
    def default_data(self) -> Path:
        return DEFAULT_TEXTS

    # Data.
    def features(self, audio: np.ndarray) -> np.ndarray:
        """A reference clip's log-mel (the emotion reference encoder's input)."""
        return log_mel(audio, self.audio)

    def read_data(self, source: Path, cache: FeatureCache) -> list[TextExample]:
        """Sentences of the .txt file(s) in `source`, one per line, each with a speaker, an
        emotion and a reference clip in turn. Reference clips: the audio files in `source` when
        it is a directory holding some, else the clips shipped with speedy."""
        lines = text_lines(source)
        has_audio = source.is_dir() and any(
            p.suffix.lower() in AUDIO_SUFFIXES for p in source.iterdir()
        )
        clips = source if has_audio else DEFAULT_CLIPS
        references = audio_features(clips, self.audio, cache, self.features)
        modes = len(self.s.emotions) + 1  # every label, then the reference clip
        examples = []
        for i, (where, text) in enumerate(lines):
            emotion = i % modes
            examples.append(
                TextExample(
                    where=where,
                    text=text,
                    tokens=self.front_end.encode(text, where),
                    reference=references[i % len(references)],
                    speaker=i % self.s.n_speakers,
                    emotion=REFERENCE_EMOTION if emotion == len(self.s.emotions) else emotion,
                )
            )
        return examples

    def inputs(self, example: Any) -> Feeds:
        """One sentence's inputs, from its text: the whole front end (which bench times)."""
        if not isinstance(example, TextExample):
            raise SpeedyError(
                "a text_to_mel model turns text into mels; it takes no audio or mel input",
                "use `speedy synth --acoustic ... --vocoder ... --text ...`",
            )
        reference = example.reference if example.emotion == REFERENCE_EMOTION else None
        controls = SpeechControls(text=example.text, speaker=example.speaker)
        return self._feeds(controls, example.emotion, reference)

    def sized_inputs(self, examples: Sequence[Any], sizes: Mapping[str, int]) -> Feeds:
        """A batch cut from the examples' symbols: item i is shorter by i * tokens / (batch + 1)
        (padding exercised), its reference cut from a real clip; speakers, emotions (every label
        and the reference) and controls take turns over the items."""
        batch, tokens, ref_frames = sizes.get("batch", 1), sizes["tokens"], sizes["ref_frames"]
        space = self.front_end.vocabulary.ids[" "]
        stream = np.concatenate([np.append(e.tokens, space) for e in examples])
        stream = np.tile(stream, -(-batch * tokens // stream.size))
        lengths = np.array([max(1, tokens - i * tokens // (batch + 1)) for i in range(batch)])
        ids = np.zeros((batch, tokens), dtype=np.int64)
        for i, length in enumerate(lengths):
            ids[i, :length] = stream[i * tokens : i * tokens + length]
        references = []
        for i in range(batch):
            clip = examples[i % len(examples)].reference
            references.append(np.tile(clip, (1, -(-ref_frames // clip.shape[1])))[:, :ref_frames])
        return batch_feeds(self.s, ids, lengths, np.stack(references), np.arange(batch))

    # Outputs.
    def seconds(self, outputs: Feeds) -> float:
        return float(outputs["mel_lengths"].sum()) * self.audio.hop_length / self.audio.sample_rate

    def handoff(self, outputs: Feeds) -> list[np.ndarray]:
        """Each item's mel (n_mels, frames), cut to its length."""
        mels, (padded, lengths) = [], self.handed
        for mel, length in zip(outputs[padded], outputs[lengths], strict=True):
            if length >= mel.shape[1]:
                notice(
                    f"speech cut at {mel.shape[1]} frames, the acoustic model's bound for this "
                    "text length: raise --speed, or network.max_frames_per_token and rebuild"
                )
            mels.append(mel[:, :length])
        return mels

    def compare(
        self,
        reference: Feeds,
        test: Feeds,
        metrics: Sequence[str],
        failures: list[str] | None = None,
    ) -> Figures:
        """`mel`: mean absolute natural-log mel difference over the frames both outputs hold;
        `frames_diff`: the largest difference in length (frames)."""
        pairs = list(zip(self._mels(reference), self._mels(test), strict=True))
        common = [min(a.shape[1], b.shape[1]) for a, b in pairs]
        diffs = np.concatenate(
            [np.abs(a[:, :n] - b[:, :n]).ravel() for (a, b), n in zip(pairs, common, strict=True)]
        )
        figures = {
            "mel": float(diffs.mean()) if diffs.size else 0.0,
            "frames_diff": float(max(abs(a.shape[1] - b.shape[1]) for a, b in pairs)),
        }
        return {name: figures[name] for name in metrics}

    def _mels(self, outputs: Feeds) -> list[np.ndarray]:
        return [m[:, :n] for m, n in zip(outputs["mel"], outputs["mel_lengths"], strict=True)]

    # Requests.
    def request(self, controls: BaseModel) -> Feeds:
        """One utterance's inputs for a user's controls (see `SpeechControls`)."""
        assert isinstance(controls, SpeechControls)
        reference = controls.reference
        if isinstance(reference, Path):
            reference = self.reference_mel(reference)
        if controls.emotion is not None and reference is not None:
            raise SpeedyError(
                "both an emotion label and a reference clip were given",
                "pass --emotion NAME or --reference CLIP, not both",
            )
        if reference is not None:
            emotion = REFERENCE_EMOTION
        else:
            emotion = self.emotion_id(controls.emotion or self.s.emotions[0])
        return self._feeds(controls, emotion, reference)

    def choices(self) -> dict[str, list[Any]]:
        return {"speaker": list(range(self.s.n_speakers)), "emotion": self.s.emotions}

    def emotion_id(self, emotion: str) -> int:
        """The index of an emotion label, with a clear error for an unknown one."""
        if emotion not in self.s.emotions:
            raise SpeedyError(
                f"unknown emotion '{emotion}'",
                f"use one of: {', '.join(self.s.emotions)}, or pass a reference clip",
            )
        return self.s.emotions.index(emotion)

    def reference_mel(self, path: Path) -> np.ndarray:
        """The log-mel of a reference clip, which must be at the model's sample rate."""
        try:
            rate = sf.info(str(path)).samplerate
        except Exception as exc:  # soundfile raises several types for unreadable files
            raise SpeedyError(
                f"cannot read reference clip {path}: {exc}", "pass a WAV/FLAC/OGG file"
            ) from exc
        if rate != self.audio.sample_rate:
            raise SpeedyError(
                f"reference clip {path} is at {rate} Hz, the acoustic model's mels are at "
                f"{self.audio.sample_rate} Hz",
                f"resample the clip to {self.audio.sample_rate} Hz (e.g. with sox or ffmpeg)",
            )
        mel = audio_example(path, self.audio.sample_rate, self.features)
        limit = self.spec.dims["ref_frames"].max
        if mel.shape[1] > limit:
            notice(f"reference clip {path.name}: using its first {limit} frames")
            mel = mel[:, :limit]
        return mel

    def _feeds(self, controls: SpeechControls, emotion: int, reference: np.ndarray | None) -> Feeds:
        """One utterance's feeds: text (or symbol ids), speaker, emotion index (with the
        reference log-mel (n_mels, frames) to take it from), speed and pitch shift."""
        ids = self.front_end.encode(controls.text)
        speaker = controls.speaker
        if not 0 <= speaker < self.s.n_speakers:
            raise SpeedyError(
                f"speaker {speaker} is out of range: this model has {self.s.n_speakers} "
                f"speakers (0..{self.s.n_speakers - 1})",
                f"pass --speaker between 0 and {self.s.n_speakers - 1}",
            )
        if reference is None:
            reference = np.full((self.audio.n_mels, 1), self.floor, np.float32)
        elif reference.ndim != 2 or reference.shape[0] != self.audio.n_mels:
            raise SpeedyError(
                f"reference mel has shape {reference.shape}, "
                f"expected ({self.audio.n_mels}, frames)",
                "pass a reference clip, or its log-mel from the same front end",
            )
        return {
            "tokens": ids[None].astype(np.int64),
            "token_lengths": np.array([ids.size], np.int64),
            "speaker": np.array([speaker], np.int64),
            "emotion": np.array([emotion], np.int64),
            "reference_mel": reference[None].astype(np.float32),
            "speed": np.array([controls.speed], np.float32),
            "pitch_shift": np.array([controls.pitch_shift], np.float32),
        }


def batch_feeds(
    settings: TextToMelSettings,
    ids: np.ndarray,
    lengths: np.ndarray,
    references: np.ndarray,
    index: np.ndarray,
) -> Feeds:
    """Feeds whose speaker, emotion and controls take turns by item `index`."""
    modes = len(settings.emotions) + 1
    emotion = np.where(index % modes == modes - 1, REFERENCE_EMOTION, index % modes)
    return {
        "tokens": ids.astype(np.int64),
        "token_lengths": lengths.astype(np.int64),
        "speaker": (index % settings.n_speakers).astype(np.int64),
        "emotion": emotion.astype(np.int64),
        "reference_mel": references.astype(np.float32),
        "speed": np.array(PARITY_SPEEDS, np.float32)[index % len(PARITY_SPEEDS)],
        "pitch_shift": np.array(PARITY_PITCH_SHIFTS, np.float32)[index % len(PARITY_PITCH_SHIFTS)],
    }
