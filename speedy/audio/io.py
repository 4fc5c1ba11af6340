"""Reading and writing audio files, with resampling to the model's rate."""

from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from speedy.console import notice
from speedy.errors import SpeedyError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


def read_audio(path: Path, sample_rate: int) -> np.ndarray:
    """Read a file as mono float32 at `sample_rate`, resampling with a notice when it differs."""
    try:
        audio, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for unreadable files
        raise SpeedyError(
            f"cannot read audio file {path}: {exc}",
            "pass a readable WAV/FLAC/OGG file",
        ) from exc
    audio = audio.mean(axis=1)
    if audio.size == 0:
        raise SpeedyError(f"audio file {path} is empty", "pass a file with samples in it")
    if file_rate != sample_rate:
        notice(f"{path.name}: resampled {file_rate} Hz -> {sample_rate} Hz")
        g = gcd(int(file_rate), sample_rate)
        audio = resample_poly(audio, sample_rate // g, int(file_rate) // g).astype(np.float32)
    return audio


def write_audio(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write float audio in [-1, 1] as 16-bit PCM."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(audio.reshape(-1), -1.0, 1.0), sample_rate, subtype="PCM_16")


def list_audio(directory: Path) -> list[Path]:
    """Audio files directly inside `directory`, in a deterministic order."""
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
