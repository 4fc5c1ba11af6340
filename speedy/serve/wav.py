"""WAV bytes for HTTP responses: 16-bit PCM, whole or streamed (a header of unknown length, then
samples as they are made)."""

import struct

import numpy as np

from speedy.audio.io import nonfinite
from speedy.errors import SpeedyError

UNKNOWN = 0xFFFFFFFF  # the size fields of a stream's header: players read to the end


def header(sample_rate: int, samples: int | None) -> bytes:
    """A mono 16-bit PCM WAV header for `samples` samples (None: a stream of unknown length)."""
    data = UNKNOWN if samples is None else 2 * samples
    riff = UNKNOWN if samples is None else 36 + data
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, 2 * sample_rate, 2, 16)
    return b"RIFF" + struct.pack("<I", riff) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", data)


def pcm16(audio: np.ndarray) -> bytes:
    """Float audio in [-1, 1] as little-endian 16-bit samples; the model's audio must be finite."""
    if bad := nonfinite(audio):
        raise SpeedyError(
            f"the model produced {bad} NaN or infinite sample(s) of {audio.size}",
            "check the artifact's parity with its parent (`speedy inspect`)",
        )
    return (np.clip(audio.reshape(-1), -1.0, 1.0) * 32767).astype("<i2").tobytes()


def wav(audio: np.ndarray, sample_rate: int) -> bytes:
    """A whole WAV file of `audio`."""
    return header(sample_rate, audio.size) + pcm16(audio)
