"""Text to wave: any artifact of a text-to-mel recipe chained with any artifact of a vocoder.

    synth = Synthesizer.load("build/sambert_zh_en/simplify", "build/hifigan_v1/simplify")
    result = synth("你好, world!", speaker=1, emotion="happy")
    write_audio("out.wav", result.audio, result.sample_rate); print(result.rtf())

Artifacts of any kind (torch, ONNX, quantized ONNX, ...) load through `speedy.runtime.load`.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, cast

import numpy as np
import soundfile as sf

from speedy import runtime
from speedy.audio.io import read_audio
from speedy.console import notice
from speedy.errors import SpeedyError
from speedy.families.base import Family
from speedy.model_spec import ModelSpec
from speedy.runtime.base import Session
from speedy.specs import DimRange


@dataclass
class Synthesis:
    """The waveform of one text, its mel, and the compute seconds of each stage."""

    audio: np.ndarray
    sample_rate: int
    mel: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def audio_seconds(self) -> float:
        return self.audio.size / self.sample_rate

    def rtf(self) -> dict[str, float]:
        """Real-time factor of each stage and of the whole chain (compute / audio seconds)."""
        stages = {name: s / self.audio_seconds for name, s in self.seconds.items()}
        return stages | {"total": sum(self.seconds.values()) / self.audio_seconds}


class TextToMel(Protocol):
    """What a text-to-mel family offers beyond `Family` (e.g. `SambertFamily`)."""

    def features(self, audio: np.ndarray) -> np.ndarray: ...

    def text_feeds(
        self,
        text: str,
        speaker: int,
        emotion: str | None,
        reference: np.ndarray | None,
        speed: float,
        pitch_shift: float,
    ) -> dict[str, np.ndarray]: ...

    def mels(self, outputs: dict[str, np.ndarray]) -> list[np.ndarray]: ...


def check_role(spec: ModelSpec, path: Path, consumes: str, produces: str, role: str) -> Family:
    """The family of the model at `path`, after checking it turns `consumes` into `produces`."""
    family = spec.adapter()
    if (family.consumes, family.produces) != (consumes, produces):
        raise SpeedyError(
            f"{path} is a {family.name} model ({family.consumes} -> {family.produces}), "
            f"not {role} ({consumes} -> {produces})",
            f"pass an artifact of a {consumes}-to-{produces} recipe as --{role}",
        )
    return family


def check_mel_match(acoustic: ModelSpec, vocoder: ModelSpec) -> None:
    """Refuse a vocoder trained on other mels than the acoustic model predicts."""
    a, v = acoustic.audio, vocoder.audio
    differ = [
        f"{name} {getattr(a, name)} vs {getattr(v, name)}"
        for name in type(a).model_fields
        if getattr(a, name) != getattr(v, name)
    ]
    if differ:
        raise SpeedyError(
            f"the vocoder's mel spec differs from the acoustic model's: {', '.join(differ)}",
            "pair models trained on the same mel settings (sample rate, FFT, hop, mels, fmin/fmax)",
        )


def dim_range(session: Session, input_name: str, axis: int) -> DimRange:
    """The declared range of one axis of one of the session's inputs."""
    spec = next(s for s in session.inputs if s.name == input_name)
    return session.manifest.model.dims[str(spec.shape[axis])]


class Synthesizer:
    """An acoustic (text -> mel) session and a vocoder (mel -> audio) session, checked to fit."""

    def __init__(self, acoustic: Session, vocoder: Session, where: tuple[Path, Path]) -> None:
        self.acoustic, self.vocoder = acoustic, vocoder
        specs = acoustic.manifest.model, vocoder.manifest.model
        text_family = check_role(specs[0], where[0], "text", "mel", "acoustic")
        self.text_family = cast(TextToMel, text_family)
        self.vocoder_family = check_role(specs[1], where[1], "mel", "audio", "vocoder")
        check_mel_match(*specs)
        self.audio = specs[0].audio

    @classmethod
    def load(
        cls,
        acoustic: str | Path,
        vocoder: str | Path,
        device: str = "cpu",
        threads: int | None = None,
    ) -> "Synthesizer":
        """Open both artifacts (directories or model files) on `device`."""
        paths = (Path(acoustic), Path(vocoder))
        sessions = [runtime.load(p, device=device, threads=threads) for p in paths]
        return cls(sessions[0], sessions[1], paths)

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
        mel = self.text_family.features(read_audio(path, self.audio.sample_rate))
        limit = dim_range(self.acoustic, "reference_mel", -1).max
        if mel.shape[1] > limit:
            notice(f"reference clip {path.name}: using its first {limit} frames")
            mel = mel[:, :limit]
        return mel

    def __call__(
        self,
        text: str,
        speaker: int = 0,
        emotion: str | None = None,
        reference: Path | np.ndarray | None = None,
        speed: float = 1.0,
        pitch_shift: float = 0.0,
    ) -> Synthesis:
        """Speak `text` with a speaker, an emotion label or reference clip, speed and pitch."""
        start = time.perf_counter()
        if isinstance(reference, Path):
            reference = self.reference_mel(reference)
        feeds = self.text_family.text_feeds(text, speaker, emotion, reference, speed, pitch_shift)
        front_end = time.perf_counter() - start
        synthesis = self.speak(feeds)
        synthesis.seconds = {"front_end": front_end, **synthesis.seconds}
        return synthesis

    def speak(self, feeds: dict[str, np.ndarray]) -> Synthesis:
        """The mel and waveform of the acoustic model's feeds for one utterance, each of the
        two models timed."""
        start = time.perf_counter()
        outputs = self.acoustic.run(feeds)
        seconds = {"acoustic": time.perf_counter() - start}
        mel = self.mel(outputs)
        start = time.perf_counter()
        audio = self.vocode(mel)
        seconds["vocoder"] = time.perf_counter() - start
        return Synthesis(audio=audio, sample_rate=self.audio.sample_rate, mel=mel, seconds=seconds)

    def mel(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """The (n_mels, frames) mel in the acoustic model's outputs for one utterance."""
        mel = self.text_family.mels(outputs)[0]
        if outputs["mel_lengths"][0] >= outputs["mel"].shape[2]:
            notice(
                f"speech cut at {mel.shape[1]} frames, the acoustic model's bound for this text "
                "length: raise --speed, or network.max_frames_per_token and rebuild"
            )
        return mel

    def vocode(self, mel: np.ndarray) -> np.ndarray:
        """The vocoder's waveform for `mel`, padded with silence up to its shortest input."""
        frames = dim_range(self.vocoder, self.vocoder.inputs[0].name, -1)
        floor = np.log(self.audio.log_clamp)
        padded = np.pad(
            mel, ((0, 0), (0, max(0, frames.min - mel.shape[1]))), constant_values=floor
        )
        feeds, _ = self.vocoder_family.utterance(padded.astype(np.float32))
        audio = self.vocoder_family.waveform(self.vocoder.run(feeds))
        return audio[: mel.shape[1] * self.audio.hop_length]
