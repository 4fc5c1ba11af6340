"""DNSMOS (Reddy et al. 2022): non-intrusive MOS of speech, with the ONNX models in `speechmos`.

Reproduces `speechmos.dnsmos` (Microsoft's DNS-Challenge reference) without librosa: the P.808
model's log-mel features are librosa's `melspectrogram` (n_fft 321, hop 160, 120 Slaney mels,
centred zero-padded STFT, periodic Hann window, power 2) and `power_to_db(ref=max)` rebuilt in
NumPy, with the same float32 steps. Scores are the mean over 9.01 s windows hopped by 1 s; shorter
audio is repeated to 9.01 s first, as the reference does.
"""

import importlib.util
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import resample_poly

from speedy.audio.mel import slaney_filters
from speedy.errors import SpeedyError

SAMPLE_RATE = 16000
INPUT_SECONDS = 9.01
N_FFT, HOP, N_MELS = 321, 160, 120
TOP_DB, AMIN = 80.0, 1e-10
# Third-order polynomials mapping the raw SIG/BAK/OVRL outputs to MOS (highest power first).
SIG_POLY = (-0.08397278, 1.22083953, 0.0052439)
BAK_POLY = (-0.13166888, 1.60915514, -0.39604546)
OVRL_POLY = (-0.06766283, 1.11546468, 0.04602535)


@dataclass(frozen=True)
class DnsmosScores:
    """Signal, background, overall (P.835) and P.808 MOS estimates, about 1..5."""

    sig: float
    bak: float
    ovrl: float
    p808: float


def models_dir() -> Path:
    """The DNSMOS ONNX models shipped inside the `speechmos` package (not imported)."""
    spec = importlib.util.find_spec("speechmos")
    if spec is None or not spec.submodule_search_locations:
        raise SpeedyError(
            "DNSMOS needs the speechmos package (it ships the ONNX models)",
            "pip install 'openspeedy[eval]'",
        )
    return Path(spec.submodule_search_locations[0]) / "dnsmos_models"


def p808_features(audio: np.ndarray) -> np.ndarray:
    """(frames, 120) scaled log-mel power of 16 kHz audio, as `speechmos` computes it."""
    padded = np.pad(audio, N_FFT // 2)  # centred frames, zero padding
    frames = sliding_window_view(padded, N_FFT)[::HOP]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann
    stft = np.fft.rfft(window * frames, axis=-1).astype(np.complex64)
    power = np.abs(stft) ** 2
    fft_hz = np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE)
    filters = slaney_filters(fft_hz, N_MELS, 0.0, SAMPLE_RATE / 2).astype(np.float32)
    mel = power @ filters.T
    db = 10.0 * np.log10(np.maximum(AMIN, mel))
    db -= 10.0 * np.log10(np.maximum(AMIN, mel.max()))
    db = np.maximum(db, db.max() - TOP_DB)
    return (db + 40) / 40


class Dnsmos:
    """The SIG/BAK/OVRL and P.808 ONNX models, loaded on first use."""

    def __init__(self, threads: int | None = None) -> None:
        self.directory = models_dir()
        self.threads = threads

    def _session(self, name: str) -> ort.InferenceSession:
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
        path = self.directory / name
        if not path.is_file():
            raise SpeedyError(f"DNSMOS model {path} is missing", "reinstall speechmos")
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    @cached_property
    def _primary(self) -> ort.InferenceSession:
        return self._session("sig_bak_ovr.onnx")

    @cached_property
    def _p808(self) -> ort.InferenceSession:
        return self._session("model_v8.onnx")

    def score_16k(self, audio: np.ndarray) -> DnsmosScores:
        """Scores of mono 16 kHz audio in [-1, 1]."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if audio.size == 0 or not np.all(np.isfinite(audio)) or np.abs(audio).max() > 1:
            raise SpeedyError("DNSMOS needs finite audio in [-1, 1]", "check the model's output")
        length = int(INPUT_SECONDS * SAMPLE_RATE)
        while audio.size < length:
            audio = np.append(audio, audio)
        hops = int(np.floor(audio.size / SAMPLE_RATE) - INPUT_SECONDS) + 1
        scores = []
        for index in range(hops):
            start, stop = int(index * SAMPLE_RATE), int((index + INPUT_SECONDS) * SAMPLE_RATE)
            segment = audio[start:stop]
            if segment.size < length:
                continue
            mel = p808_features(segment[:-HOP]).astype(np.float32)[None]
            p808 = self._p808.run(None, {"input_1": mel})[0][0][0]
            raw = self._primary.run(None, {"input_1": segment.astype(np.float32)[None]})[0][0]
            polys = (SIG_POLY, BAK_POLY, OVRL_POLY)
            scores.append([*(np.polyval(p, x) for p, x in zip(polys, raw, strict=True)), p808])
        sig, bak, ovrl, p808 = np.mean(scores, axis=0)
        return DnsmosScores(float(sig), float(bak), float(ovrl), float(p808))

    def score(self, audio: np.ndarray, sample_rate: int) -> DnsmosScores:
        """Scores of mono audio at `sample_rate`, resampled to 16 kHz first."""
        if sample_rate != SAMPLE_RATE:
            g = math.gcd(sample_rate, SAMPLE_RATE)
            audio = resample_poly(audio, SAMPLE_RATE // g, sample_rate // g)
            audio = np.clip(audio, -1.0, 1.0)
        return self.score_16k(audio)
