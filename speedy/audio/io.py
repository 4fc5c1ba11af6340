"""Reading and writing audio files, with resampling to the model's rate."""

import os
from math import gcd
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt
import soundfile as sf
from scipy.signal import resample_poly

from speedy.console import notice
from speedy.errors import SpeedyError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
_told: set[str] = set()  # resampling notices given in this process
SOFTWARE = "openspeedy"  # the `software` field of the WAVs speedy writes


def read_audio(source: Path | BinaryIO, sample_rate: int, name: str | None = None) -> np.ndarray:
    """Read a file (or an open one, called `name`) as mono float32 at `sample_rate`, resampling
    with a notice when it differs."""
    what, short = (name, name) if name else (f"audio file {source}", Path(str(source)).name)
    try:
        audio, file_rate = sf.read(source, dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for unreadable files
        reason = str(exc).rsplit(": ", 1)[-1] if name else exc  # an open file's repr is noise
        raise SpeedyError(
            f"cannot read {what}: {reason}", "pass a readable WAV/FLAC/OGG file"
        ) from exc
    if audio.shape[1] > 1:
        notice(f"{short}: {audio.shape[1]} channels mixed down to mono")
    audio = audio.mean(axis=1)
    if audio.size == 0:
        raise SpeedyError(f"{what} is empty", "pass a file with samples in it")
    check_finite(audio, what)
    if file_rate != sample_rate:
        told = f"{short}: resampled {file_rate} Hz -> {sample_rate} Hz"
        if told not in _told:  # once per file, however often a run reads it
            _told.add(told)
            notice(told)
        g = gcd(int(file_rate), sample_rate)
        audio = resample_poly(audio, sample_rate // g, int(file_rate) // g).astype(np.float32)
    return audio


def nonfinite(values: np.ndarray) -> int:
    """How many NaN and infinite values `values` holds."""
    return int(values.size - np.count_nonzero(np.isfinite(values)))


def check_finite(values: np.ndarray, what: str, dtype: npt.DTypeLike = np.float32) -> np.ndarray:
    """`values` as `dtype` (what the model takes), refused where any is NaN or infinite before
    or after the cast (a float64 1e300 is infinite as float32)."""
    values = np.asarray(values)
    with np.errstate(over="ignore", invalid="ignore"):
        cast = values.astype(dtype, copy=False)
    if bad := max(nonfinite(values), nonfinite(cast)):
        raise SpeedyError(
            f"{what} holds {bad} NaN or infinite value(s) of {cast.size} as {cast.dtype}",
            f"pass finite values within {cast.dtype}'s range",
        )
    return cast


def write_audio(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write float audio in [-1, 1] as 16-bit PCM, through a temporary file renamed into place
    (a failure leaves no truncated file); the model's audio must be finite."""
    if bad := nonfinite(audio):
        raise SpeedyError(
            f"the model produced {bad} NaN or infinite sample(s) of {audio.size}; nothing written",
            "check the input, and the artifact's parity with its parent (`speedy inspect`)",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with sf.SoundFile(str(partial), "w", sample_rate, 1, "PCM_16", format="WAV") as wav:
            wav.software = SOFTWARE  # how `--force` tells speedy's WAVs from the user's files
            wav.write(np.clip(audio.reshape(-1), -1.0, 1.0))
        partial.replace(path)
    except (sf.LibsndfileError, OSError) as exc:
        raise SpeedyError(
            f"cannot write {path}: {exc}", "choose a writable place with free space"
        ) from exc
    finally:
        partial.unlink(missing_ok=True)


def written_by_speedy(path: Path) -> bool:
    """Whether `path` is a WAV that `write_audio` wrote (its `software` field says so)."""
    try:
        with sf.SoundFile(str(path)) as wav:
            return wav.format == "WAV" and (wav.software or "").startswith(SOFTWARE)
    except (sf.LibsndfileError, OSError, RuntimeError):
        return False


def list_audio(directory: Path) -> list[Path]:
    """Audio files directly inside `directory`, in a deterministic order."""
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
