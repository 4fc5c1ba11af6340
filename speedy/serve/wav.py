"""Audio bytes for HTTP responses: 16-bit PCM WAV whole or streamed (a header of unknown length,
then samples as they are made), raw 16-bit PCM, and FLAC, MP3 and Opus through libsndfile."""

import io
import struct
from math import gcd

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from speedy.audio.io import nonfinite
from speedy.errors import SpeedyError

UNKNOWN = 0xFFFFFFFF  # the size fields of a stream's header: players read to the end
MEDIA_TYPES = {
    "wav": "audio/wav",
    "pcm": "audio/pcm",  # 16-bit little-endian mono at the model's rate (X-Sample-Rate)
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
}
STREAMED = ("wav", "pcm")  # the formats whose bytes can be sent as the samples are made
OPUS_RATE = 48000  # of the rates Opus takes, the one every model's rate resamples to cleanly


def header(sample_rate: int, samples: int | None) -> bytes:
    """A mono 16-bit PCM WAV header for `samples` samples (None: a stream of unknown length)."""
    data = UNKNOWN if samples is None else 2 * samples
    riff = UNKNOWN if samples is None else 36 + data
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, 2 * sample_rate, 2, 16)
    return b"RIFF" + struct.pack("<I", riff) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", data)


def _finite(audio: np.ndarray) -> np.ndarray:
    """`audio` as one channel in [-1, 1]; the model's audio must be finite."""
    if bad := nonfinite(audio):
        raise SpeedyError(
            f"the model produced {bad} NaN or infinite sample(s) of {audio.size}",
            "check the artifact's parity with its parent (`speedy inspect`)",
        )
    return np.clip(audio.reshape(-1), -1.0, 1.0)


def pcm16(audio: np.ndarray) -> bytes:
    """Float audio in [-1, 1] as little-endian 16-bit samples."""
    return (_finite(audio) * 32767).astype("<i2").tobytes()


def wav(audio: np.ndarray, sample_rate: int) -> bytes:
    """A whole WAV file of `audio`."""
    return header(sample_rate, audio.size) + pcm16(audio)


def encoded(audio: np.ndarray, sample_rate: int, format: str) -> bytes:
    """A whole file of `audio` in `format` (a key of MEDIA_TYPES)."""
    if format == "wav":
        return wav(audio, sample_rate)
    if format == "pcm":
        return pcm16(audio)
    samples = _finite(audio)
    if format == "opus":
        g = gcd(OPUS_RATE, sample_rate)
        samples = resample_poly(samples, OPUS_RATE // g, sample_rate // g).astype(np.float32)
        sample_rate = OPUS_RATE
    buffer = io.BytesIO()
    subtype = {"opus": "OPUS", "mp3": "MPEG_LAYER_III"}.get(format)
    sf.write(
        buffer, samples, sample_rate, format="OGG" if format == "opus" else format, subtype=subtype
    )
    return buffer.getvalue()
