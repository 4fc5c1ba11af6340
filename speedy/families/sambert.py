"""Sambert-style acoustic model family: Chinese/English text -> 80-band log-mel, multi-speaker,
multi-emotion; its mels feed the HiFi-GAN recipe (22,050 Hz, hop 256, same mel front end).

Recipe: `recipes/sambert_zh_en.yaml` (`speedy run sambert_zh_en`), then
`speedy synth --acoustic build/sambert_zh_en/simplify --vocoder build/hifigan_v1/simplify
--text "你好, world" --speaker 1 --emotion happy -o out.wav`.

Weights. No trained checkpoint of this family can be fetched here, so without `checkpoint:` the
recipe builds the network from `network.seed` with random weights of the real size (about 5 M
parameters at the default settings), their duration and mel outputs set to speech-like
statistics so that every stage sees realistic shapes. The audio of such weights is not speech.
A trained checkpoint is a `torch.save` file of a state dict with the keys below (`{i}`: layer
index, `{j}`: postnet layer index), either at the top level or under `model` or `state_dict`,
optionally prefixed with `module.` (DataParallel); shapes follow `network` (d = d_model,
f = ffn_channels, p = predictor_channels, r = reference_channels, c = postnet_channels,
V = vocabulary size, S = n_speakers, E = number of emotions).

State-dict keys:
    `embedding.weight` (V, d): symbol embedding; row 0 is padding
    `encoder.{i}.qkv.*`, `decoder.{i}.qkv.*`: attention in-projection (3d, d), queries/keys/values
    `encoder.{i}.out.*`, `decoder.{i}.out.*`: attention out-projection (d, d)
    `encoder.{i}.norm1.*`, `encoder.{i}.norm2.*`, `decoder.{i}.norm1.*`, `decoder.{i}.norm2.*`
    `encoder.{i}.ffn_in.conv.*`, `decoder.{i}.ffn_in.conv.*`: FFN conv (f, d, ffn_kernel)
    `encoder.{i}.ffn_out.*`, `decoder.{i}.ffn_out.*`: FFN projection (d, f)
    `speaker_embedding.weight` (S, d), `emotion_embedding.weight` (E, d), in `emotions` order
    `reference_encoder.conv1.*` (r, n_mels, 3), `reference_encoder.conv2.*` (r, r, 3)
    `reference_encoder.gru.*` (one-layer GRU, hidden r), `reference_encoder.proj.*` (d, r)
    `*_predictor.conv1.conv.*`, `*_predictor.norm1.*`, `*_predictor.conv2.conv.*`,
        `*_predictor.norm2.*`, `*_predictor.proj.*` for the duration, pitch and energy
        predictors (* = duration, pitch, energy), which predict log(frames + 1), z-scored
        log-F0 (std `log_f0_std`) and z-scored energy per symbol
    `pitch_embedding.conv.*`, `energy_embedding.conv.*`: (d, 1, 3)
    `mel_linear.*` (n_mels, d)
    `postnet.convs.{j}.*`, `postnet.norms.{j}.*` (BatchNorm1d with running statistics)

Inputs (dynamic batch, tokens, ref_frames): `tokens` int64 (batch, tokens) symbol ids of the
`vocabulary`, 0-padded; `token_lengths` int64 (batch,); `speaker` int64 (batch,); `emotion`
int64 (batch,), an index into `emotions` or -1 for "from the reference"; `reference_mel`
float32 (batch, n_mels, ref_frames), a log-mel of a reference clip (one floor-valued frame when
the emotion is a label); `speed` float32 (batch,), durations are divided by it; `pitch_shift`
float32 (batch,) in semitones. Outputs: `mel` float32 (batch, n_mels, tokens *
max_frames_per_token), frames past `mel_lengths` int64 (batch,) hold the log floor (silence).
The frame axis is bounded by the input's shape, not by the predicted durations, so the graph
has no data-dependent shapes (TensorRT builds it with plain optimization profiles); the price is
decoder work on the padding, so lower `max_frames_per_token` (16 covers speed 0.5 at about 6
frames per symbol) where slow speech is never asked for.
"""

import math
import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel

from speedy.audio.cache import FeatureCache
from speedy.audio.io import AUDIO_SUFFIXES
from speedy.audio.mel import AudioSpec, log_mel
from speedy.data_source import DEFAULT_CLIPS, audio_features, text_lines
from speedy.errors import SpeedyError
from speedy.families.base import Family
from speedy.families.sambert_model import REFERENCE_EMOTION, Sambert, SambertParams
from speedy.specs import TensorSpec
from speedy.text import TextFrontEnd, vocabulary

DEFAULT_TEXTS = Path(str(files("speedy") / "data" / "calibration" / "eval_texts_zh_en.txt"))
PARITY_SPEEDS = (1.0, 0.8, 1.25)
PARITY_PITCH_SHIFTS = (0.0, 2.0, -3.0)


@dataclass(frozen=True)
class TextExample:
    """One sentence of a data source, with the speaker, emotion and reference clip to say it."""

    where: str  # file:line
    text: str
    tokens: np.ndarray  # int64 (symbols,)
    reference: np.ndarray  # float32 (n_mels, frames): log-mel of a real clip
    speaker: int
    emotion: int  # index into `emotions`, or REFERENCE_EMOTION


class SambertFamily(Family):
    """Adapter for Sambert/FastSpeech2-style text-to-mel models."""

    name: ClassVar[str] = "sambert"
    Params: ClassVar[type[BaseModel]] = SambertParams
    quality_metric: ClassVar[str] = "mel"
    consumes: ClassVar = "text"
    produces: ClassVar = "mel"
    default_data: ClassVar[Path] = DEFAULT_TEXTS

    def __init__(self, params: BaseModel, audio: AudioSpec) -> None:
        super().__init__(params, audio)
        assert isinstance(params, SambertParams)
        self.p = params
        self.front_end = TextFrontEnd(vocabulary(params.vocabulary))
        self.floor = float(np.log(audio.log_clamp))

    # Network and weights.
    def build(self) -> torch.nn.Module:
        torch.manual_seed(self.p.seed)
        model = Sambert(self.p, len(self.front_end.vocabulary), self.audio.n_mels, self.floor)
        model.seed_statistics()
        return model.eval()

    def adapt_state_dict(self, state: dict[str, Any]) -> dict[str, torch.Tensor]:
        for key in ("model", "state_dict"):
            if isinstance(state.get(key), dict):
                state = state[key]
        return {re.sub(r"^module\.", "", k): v for k, v in state.items()}

    # Graph interface.
    def inputs(self) -> list[TensorSpec]:
        vector = ["batch"]
        return [
            TensorSpec(name="tokens", dtype="int64", shape=["batch", "tokens"]),
            TensorSpec(name="token_lengths", dtype="int64", shape=vector),
            TensorSpec(name="speaker", dtype="int64", shape=vector),
            TensorSpec(name="emotion", dtype="int64", shape=vector),
            TensorSpec(
                name="reference_mel",
                dtype="float32",
                shape=["batch", self.audio.n_mels, "ref_frames"],
            ),
            TensorSpec(name="speed", dtype="float32", shape=vector),
            TensorSpec(name="pitch_shift", dtype="float32", shape=vector),
        ]

    def outputs(self) -> list[TensorSpec]:
        return [
            TensorSpec(name="mel", dtype="float32", shape=["batch", self.audio.n_mels, "frames"]),
            TensorSpec(name="mel_lengths", dtype="int64", shape=["batch"]),
        ]

    def example_feeds(self, sizes: dict[str, int], seed: int = 0) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        batch, tokens = sizes.get("batch", 1), sizes["tokens"]
        reference = rng.normal(-5.0, 2.0, (batch, self.audio.n_mels, sizes["ref_frames"]))
        return self._batch(
            rng.integers(1, len(self.front_end.vocabulary), (batch, tokens)),
            np.full(batch, tokens),
            reference,
            index=np.arange(batch),
        )

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
        references = audio_features(source if has_audio else DEFAULT_CLIPS, self, cache)
        modes = len(self.p.emotions) + 1  # every label, then the reference clip
        examples = []
        for i, (where, text) in enumerate(lines):
            emotion = i % modes
            examples.append(
                TextExample(
                    where=where,
                    text=text,
                    tokens=self.front_end.encode(text, where),
                    reference=references[i % len(references)],
                    speaker=i % self.p.n_speakers,
                    emotion=REFERENCE_EMOTION if emotion == len(self.p.emotions) else emotion,
                )
            )
        return examples

    def feeds(self, features: Any, sizes: dict[str, int]) -> dict[str, np.ndarray]:
        """A batch cut from the examples' symbols: item i is shorter by i * tokens / (batch + 1)
        (padding exercised), its reference cut from a real clip; speakers, emotions (every label
        and the reference) and controls take turns over the items."""
        examples = list(features)
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
        return self._batch(ids, lengths, np.stack(references), index=np.arange(batch))

    def _batch(
        self, ids: np.ndarray, lengths: np.ndarray, references: np.ndarray, index: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Feeds whose speaker, emotion and controls take turns by item `index`."""
        modes = len(self.p.emotions) + 1
        emotion = np.where(index % modes == modes - 1, REFERENCE_EMOTION, index % modes)
        return {
            "tokens": ids.astype(np.int64),
            "token_lengths": lengths.astype(np.int64),
            "speaker": (index % self.p.n_speakers).astype(np.int64),
            "emotion": emotion.astype(np.int64),
            "reference_mel": references.astype(np.float32),
            "speed": np.array(PARITY_SPEEDS, np.float32)[index % len(PARITY_SPEEDS)],
            "pitch_shift": np.array(PARITY_PITCH_SHIFTS, np.float32)[
                index % len(PARITY_PITCH_SHIFTS)
            ],
        }

    def utterance(self, features: Any) -> tuple[dict[str, np.ndarray], None]:
        if not isinstance(features, TextExample):
            raise SpeedyError(
                "the sambert family turns text into mels; it takes no audio or mel input",
                "use `speedy synth --acoustic ... --vocoder ... --text ...`",
            )
        example = features
        reference = example.reference if example.emotion == REFERENCE_EMOTION else None
        # from the text, not `example.tokens`: the whole front end, which `speedy bench` times
        feeds = self.text_feeds(example.text, example.speaker, example.emotion, reference)
        return feeds, None  # the audio length is known from the outputs only

    # Outputs.
    def waveform(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        raise SpeedyError(
            "a sambert model outputs mel spectrograms, not audio",
            "chain a vocoder: `speedy synth --acoustic ... --vocoder ...`",
        )

    def mels(self, outputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Each item's mel (n_mels, frames), cut to its length."""
        return [
            mel[:, :length]
            for mel, length in zip(outputs["mel"], outputs["mel_lengths"], strict=True)
        ]

    def seconds(self, outputs: dict[str, np.ndarray]) -> float:
        return float(outputs["mel_lengths"].sum()) * self.audio.hop_length / self.audio.sample_rate

    def quality(
        self, reference: dict[str, np.ndarray], test: dict[str, np.ndarray]
    ) -> dict[str, float]:
        """Mean absolute natural-log mel difference over the frames both outputs hold, and the
        largest difference in length (frames)."""
        pairs = list(zip(self.mels(reference), self.mels(test), strict=True))
        common = [min(a.shape[1], b.shape[1]) for a, b in pairs]
        diffs = np.concatenate(
            [np.abs(a[:, :n] - b[:, :n]).ravel() for (a, b), n in zip(pairs, common, strict=True)]
        )
        return {
            "mel": float(diffs.mean()) if diffs.size else 0.0,
            "frames_diff": float(max(abs(a.shape[1] - b.shape[1]) for a, b in pairs)),
        }

    # Text to mel.
    def emotion_id(self, emotion: str) -> int:
        """The index of an emotion label, with a clear error for an unknown one."""
        if emotion not in self.p.emotions:
            raise SpeedyError(
                f"unknown emotion '{emotion}'",
                f"use one of: {', '.join(self.p.emotions)}, or pass a reference clip",
            )
        return self.p.emotions.index(emotion)

    def text_feeds(
        self,
        text: str | np.ndarray,
        speaker: int = 0,
        emotion: str | int | None = None,
        reference: np.ndarray | None = None,
        speed: float = 1.0,
        pitch_shift: float = 0.0,
    ) -> dict[str, np.ndarray]:
        """Feeds for one utterance: text (or symbol ids), speaker, an emotion label (or a
        reference log-mel (n_mels, frames) to take it from), speed and pitch shift (semitones)."""
        ids = self.front_end.encode(text) if isinstance(text, str) else text
        if not 0 <= speaker < self.p.n_speakers:
            raise SpeedyError(
                f"speaker {speaker} is out of range: this model has {self.p.n_speakers} "
                f"speakers (0..{self.p.n_speakers - 1})",
                f"pass --speaker between 0 and {self.p.n_speakers - 1}",
            )
        if not (math.isfinite(speed) and speed > 0):
            raise SpeedyError(f"speed {speed} is not a positive number", "pass e.g. --speed 1.2")
        emotion_index = self._emotion_index(emotion, reference)
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
            "emotion": np.array([emotion_index], np.int64),
            "reference_mel": reference[None].astype(np.float32),
            "speed": np.array([speed], np.float32),
            "pitch_shift": np.array([pitch_shift], np.float32),
        }

    def _emotion_index(self, emotion: str | int | None, reference: np.ndarray | None) -> int:
        if isinstance(emotion, int):
            return emotion
        if emotion is not None and reference is not None:
            raise SpeedyError(
                "both an emotion label and a reference clip were given",
                "pass --emotion NAME or --reference CLIP, not both",
            )
        if reference is not None:
            return REFERENCE_EMOTION
        return self.emotion_id(emotion or self.p.emotions[0])
