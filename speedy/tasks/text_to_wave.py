"""Text to wave: an end-to-end voice (VITS-style, as Piper ships them) from phoneme ids to audio.

Graph contract (Piper's). Inputs (dims batch_size, phonemes): `input` int64 (batch, phonemes)
phoneme ids; `input_lengths` int64 (batch,); `scales` float32 (3,) = noise scale, length scale,
noise width; `sid` int64 (batch,) for a multi-speaker voice. Output: `output` float32 audio
(batch, 1, 1, samples) or any shape holding one waveform per item.

Text becomes phonemes through espeak-ng (`piper-phonemize`, the `[piper]` extra) with the voice's
espeak voice, then ids through its `phoneme_id_map`: BOS, pad, each phoneme followed by pad, EOS.
The graph draws random noise scaled by the noise scales: every run on data (parity, calibration,
quality, bench) uses noise scales 0, so it is deterministic; requests use the voice's own.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from speedy.audio.cache import FeatureCache
from speedy.data_source import TEXT_SUFFIXES, text_lines
from speedy.errors import SpeedyError
from speedy.quality import AUDIO_METRICS
from speedy.specs import Feeds
from speedy.tasks.base import AudioOut, Imported
from speedy.tasks.capabilities import NoiseScale, Speed, TakesRequests

DEFAULT_TEXTS = Path(str(files("speedy") / "data" / "calibration" / "eval_texts_en.txt"))
BOS, EOS, PAD = "^", "$", "_"
IDS, LENGTHS, SCALES, SPEAKER, OUTPUT = "input", "input_lengths", "scales", "sid", "output"


class TextToWaveSettings(BaseModel):
    """The voice's phonemizer, symbols, default scales and speakers (from its config)."""

    model_config = ConfigDict(extra="forbid")

    espeak_voice: str
    phoneme_id_map: dict[str, list[int]] = Field(min_length=1)
    noise_scale: float = 0.667
    length_scale: float = 1.0
    noise_w: float = 0.8
    speakers: int = Field(default=1, ge=1)


class VoiceRequest(BaseModel):
    """What one request may ask: text, speaker, speed and the noise scales (default: the
    voice's)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    text: str
    speaker: int = 0
    speed: Speed = 1.0
    noise_scale: NoiseScale | None = None
    noise_w: NoiseScale | None = None


@dataclass(frozen=True)
class Sentence:
    """One line of a data source and its phoneme ids."""

    where: str  # file:line
    text: str
    ids: np.ndarray  # int64 (phonemes,)


def piper_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """Task settings from a Piper voice's `.onnx.json`."""
    try:
        scales = config.get("inference", {})
        return TextToWaveSettings(
            espeak_voice=config["espeak"]["voice"],
            phoneme_id_map=config["phoneme_id_map"],
            noise_scale=scales.get("noise_scale", 0.667),
            length_scale=scales.get("length_scale", 1.0),
            noise_w=scales.get("noise_w", 0.8),
            speakers=config.get("num_speakers", 1),
        ).model_dump()
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise SpeedyError(
            f"the voice config is not a Piper config ({type(exc).__name__}: {exc})",
            "pass the voice's .onnx.json with --config (espeak.voice, phoneme_id_map)",
        ) from exc


class TextToWave(AudioOut, TakesRequests):
    """Text (speaker, speed, noise) to a waveform in one graph."""

    name: ClassVar[str] = "text_to_wave"
    Settings: ClassVar[type[BaseModel]] = TextToWaveSettings
    Controls: ClassVar[type[BaseModel]] = VoiceRequest
    Request: ClassVar[type[BaseModel]] = VoiceRequest
    consumes: ClassVar[str] = "text"
    audio_output: ClassVar[str] = OUTPUT
    data_suffixes: ClassVar[tuple[str, ...]] = TEXT_SUFFIXES
    data_kind: ClassVar[str] = "text (.txt)"
    metrics: ClassVar[dict[str, bool]] = AUDIO_METRICS
    report_metrics: ClassVar[tuple[str, ...]] = ("mel", "stft", "pesq")
    bench_metrics: ClassVar[tuple[str, ...]] = ("mel", "mcd", "pesq", "stoi")
    rank_by: ClassVar[str] = "mel"
    default_budget: ClassVar[str] = "pesq>=4.0"
    runs_note: ClassVar[str | None] = "noise scales 0 (deterministic runs)"
    batch_dim: ClassVar[str] = "batch_size"
    settings: TextToWaveSettings

    @property
    def default_data(self) -> Path:
        return DEFAULT_TEXTS

    @classmethod
    def imported_settings(cls, graph: Imported) -> dict[str, Any]:
        names = {spec.name for spec in graph.inputs}
        if missing := sorted({IDS, LENGTHS, SCALES} - names):
            raise SpeedyError(
                f"the graph has no input {missing[0]!r}: it is not a Piper/VITS voice",
                "import it with --task generic",
            )
        if graph.config is None:
            raise SpeedyError(
                "a text_to_wave voice needs its config (phonemes and their ids)",
                "pass the voice's .onnx.json with --config",
            )
        return piper_settings(graph.config)

    # Data and front end.
    def phoneme_ids(self, text: str, where: str = "the text") -> np.ndarray:
        """Phoneme ids of `text` (espeak-ng phonemes, sentences joined by a space)."""
        try:
            from piper_phonemize import phonemize_espeak
        except ImportError as exc:
            raise SpeedyError(
                "text_to_wave voices need piper-phonemize (espeak-ng phonemes)",
                "pip install 'openspeedy[piper]'",
            ) from exc
        sentences = phonemize_espeak(text, self.settings.espeak_voice)
        table = self.settings.phoneme_id_map
        ids = [*table[BOS], *table[PAD]]
        for phoneme in " ".join("".join(s) for s in sentences):
            if phoneme in table:
                ids += [*table[phoneme], *table[PAD]]
        ids += table[EOS]
        if len(ids) <= 3:
            raise SpeedyError(f"{where} has nothing to say", "write words to speak")
        return np.array(ids, np.int64)

    def read_data(self, source: Path, cache: FeatureCache) -> list[Sentence]:
        return [Sentence(w, t, self.phoneme_ids(t, w)) for w, t in text_lines(source)]

    def inputs(self, example: Any) -> Feeds:
        """One sentence's inputs at noise scales 0 (deterministic)."""
        if not isinstance(example, Sentence):
            raise SpeedyError(
                "a text_to_wave voice speaks text; it takes no audio or mel input",
                "use `speedy synth --acoustic VOICE --text ...`",
            )
        return self._feeds(example.ids[None], 0, 0.0, self.settings.length_scale, 0.0)

    def sized_inputs(self, examples: Sequence[Sentence], sizes: Mapping[str, int]) -> Feeds:
        """`batch_size` items of `phonemes` ids cut in turn from the sentences end to end."""
        length, batch = sizes["phonemes"], sizes.get(self.batch_dim, 1)
        stream = np.concatenate([e.ids for e in examples])
        stream = np.tile(stream, -(-length * batch // stream.size))
        ids = stream[: length * batch].reshape(batch, length)
        return self._feeds(ids, 0, 0.0, self.settings.length_scale, 0.0)

    def _feeds(
        self, ids: np.ndarray, speaker: int, noise: float, length_scale: float, noise_w: float
    ) -> Feeds:
        batch = ids.shape[0]
        feeds = {
            IDS: ids.astype(np.int64),
            LENGTHS: np.full(batch, ids.shape[1], np.int64),
            SCALES: np.array([noise, length_scale, noise_w], np.float32),
        }
        if self.settings.speakers > 1:
            feeds[SPEAKER] = np.full(batch, speaker, np.int64)
        return feeds

    # Requests.
    def request(self, controls: BaseModel) -> Feeds:
        """One utterance's inputs for a user's controls, with the voice's noise by default."""
        assert isinstance(controls, VoiceRequest)
        s = self.settings
        if not 0 <= controls.speaker < s.speakers:
            raise SpeedyError(
                f"speaker {controls.speaker} is out of range: this voice has {s.speakers}",
                f"pass --speaker between 0 and {s.speakers - 1}",
            )
        noise = s.noise_scale if controls.noise_scale is None else controls.noise_scale
        noise_w = s.noise_w if controls.noise_w is None else controls.noise_w
        ids = self.phoneme_ids(controls.text)[None]
        return self._feeds(ids, controls.speaker, noise, s.length_scale / controls.speed, noise_w)

    def choices(self) -> dict[str, list[Any]]:
        return {"speaker": list(range(self.settings.speakers))}
