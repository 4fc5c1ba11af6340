"""Log-mel front end, vectorized in NumPy, matching HiFi-GAN's training features.

HiFi-GAN (`meldataset.mel_spectrogram`) reflect-pads by (n_fft - hop) / 2 on each side, takes an
un-centred STFT with a periodic Hann window, the magnitude sqrt(re^2 + im^2 + 1e-9), a Slaney-style
mel filterbank (librosa's default) and log(clamp(mel, 1e-5)).
"""

from functools import lru_cache

import numpy as np
from pydantic import BaseModel, ConfigDict, PositiveInt, model_validator

from speedy.errors import SpeedyError


class AudioSpec(BaseModel):
    """Sample rate and mel parameters a model was trained with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sample_rate: PositiveInt
    n_fft: PositiveInt
    hop_length: PositiveInt
    win_length: PositiveInt
    n_mels: PositiveInt
    fmin: float = 0.0
    fmax: float
    log_clamp: float = 1e-5

    @model_validator(mode="after")
    def _check(self) -> "AudioSpec":
        if self.win_length > self.n_fft:
            raise ValueError("win_length must not exceed n_fft")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError("need 0 <= fmin < fmax <= sample_rate / 2")
        return self


def standard_audio(sample_rate: int) -> AudioSpec:
    """Mel settings for measuring audio at `sample_rate` when a model states none (VITS's and
    HiFi-GAN's at 22.05 kHz: FFT 1024, hop 256, 80 mels up to 8 kHz)."""
    return AudioSpec(
        sample_rate=sample_rate,
        n_fft=1024,
        hop_length=256,
        win_length=1024,
        n_mels=80,
        fmax=min(8000.0, sample_rate / 2),
    )


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    linear = mel * (200.0 / 3)
    log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log, linear)


def slaney_filters(fft_hz: np.ndarray, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Slaney-normalized triangular mel filters over FFT bins at `fft_hz`, float64."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]


@lru_cache(maxsize=8)
def mel_filterbank(spec: AudioSpec) -> np.ndarray:
    """Slaney-normalized triangular filters, shape (n_mels, n_fft // 2 + 1)."""
    fft_hz = np.linspace(0.0, spec.sample_rate / 2, spec.n_fft // 2 + 1)
    return slaney_filters(fft_hz, spec.n_mels, spec.fmin, spec.fmax).astype(np.float32)


def log_mel(audio: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """Log-mel spectrogram of mono audio, shape (n_mels, frames) with frames = len // hop."""
    pad = (spec.n_fft - spec.hop_length) // 2
    if audio.size < max(spec.hop_length, pad + 1):
        raise SpeedyError(
            f"{audio.size} samples is too short for a log-mel spectrogram",
            f"pass a clip of at least {max(spec.hop_length, pad + 1)} samples",
        )
    padded = np.pad(audio.astype(np.float64), pad, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, spec.n_fft)[:: spec.hop_length]
    n = np.arange(spec.win_length)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / spec.win_length)  # periodic Hann
    offset = (spec.n_fft - spec.win_length) // 2
    full_window = np.zeros(spec.n_fft)
    full_window[offset : offset + spec.win_length] = window
    stft = np.fft.rfft(frames * full_window, axis=-1)
    magnitude = np.sqrt(stft.real**2 + stft.imag**2 + 1e-9)
    mel = mel_filterbank(spec) @ magnitude.T.astype(np.float32)
    return np.log(np.maximum(mel, spec.log_clamp)).astype(np.float32)
