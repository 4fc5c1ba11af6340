"""Audio-quality metrics comparing a converted model's output against its reference.

All metrics take two 1-D signals that may differ by a small delay and a few samples of length;
they are aligned by cross-correlation first (`align`). Pure NumPy/SciPy; PESQ needs the optional
`pesq` package, imported only when used.
"""

import importlib.util
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.fft import dct
from scipy.signal import correlate, correlation_lags, resample_poly

from speedy.audio.mel import AudioSpec, log_mel
from speedy.errors import SpeedyError

SNR_CAP_DB = 200.0
MCD_COEFFICIENTS = 24  # cepstral coefficients 1..24; c0 (overall level) is left out
STFT_SIZES = (512, 1024, 2048)
_EPS = np.finfo(np.float64).eps


def _signal(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).squeeze()
    if x.ndim != 1 or x.size == 0:
        raise SpeedyError(f"{name} audio must be a non-empty 1-D array", "pass mono samples")
    if not np.all(np.isfinite(x)):
        raise SpeedyError(f"{name} audio contains NaN or Inf", "check the model's output")
    return x


def _need(n: int, minimum: int, what: str) -> None:
    if n < minimum:
        raise SpeedyError(f"{what} needs at least {minimum} samples, got {n}", "use longer audio")


def align(
    reference: np.ndarray, test: np.ndarray, max_shift: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Shift `test` by the lag in [-max_shift, max_shift] that maximizes the cross-correlation
    with `reference`, then crop both to their common length (float64 copies)."""
    ref, tst = _signal(reference, "reference"), _signal(test, "test")
    corr = correlate(tst, ref, mode="full", method="fft")
    lags = correlation_lags(tst.size, ref.size, mode="full")
    window = np.abs(lags) <= max_shift
    corr, lags = corr[window], lags[window]
    lag = int(lags[np.argmax(corr)]) if corr.max() > 0 else 0  # silence: keep as is
    if lag > 0:  # test is late: tst[n + lag] ~ ref[n]
        tst = tst[lag:]
    elif lag < 0:
        ref = ref[-lag:]
    n = min(ref.size, tst.size)
    return ref[:n], tst[:n]


def snr(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-noise ratio in dB of `test` against `reference`, element by element (same
    shape), capped at ±SNR_CAP_DB; non-finite values in either make it -SNR_CAP_DB."""
    ref, tst = (np.asarray(x, dtype=np.float64).ravel() for x in (reference, test))
    signal, noise = float(np.sum(ref**2)), float(np.sum((ref - tst) ** 2))
    if not math.isfinite(signal + noise):
        return -SNR_CAP_DB
    if noise == 0.0:
        return SNR_CAP_DB
    if signal == 0.0:
        return -SNR_CAP_DB
    return float(np.clip(10.0 * math.log10(signal / noise), -SNR_CAP_DB, SNR_CAP_DB))


# Metric implementations on already aligned, equal-length float64 signals.
def _snr(ref: np.ndarray, tst: np.ndarray, sample_rate: int | None = None) -> float:
    return snr(ref, tst)


def _log_mels(ref: np.ndarray, tst: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    fmax = min(sample_rate / 2, 8000.0)
    spec = AudioSpec(
        sample_rate=sample_rate, n_fft=1024, hop_length=256, win_length=1024, n_mels=80, fmax=fmax
    )
    _need(ref.size, spec.n_fft, "a log-mel metric")
    a, b = log_mel(ref, spec), log_mel(tst, spec)
    frames = min(a.shape[1], b.shape[1])
    return a[:, :frames].astype(np.float64), b[:, :frames].astype(np.float64)


def _mel(ref: np.ndarray, tst: np.ndarray, sample_rate: int) -> float:
    a, b = _log_mels(ref, tst, sample_rate)
    return float(np.mean(np.abs(a - b)))


def _mcd(ref: np.ndarray, tst: np.ndarray, sample_rate: int) -> float:
    a, b = _log_mels(ref, tst, sample_rate)
    cepstral = dct(a - b, type=2, norm="ortho", axis=0)[1 : MCD_COEFFICIENTS + 1]  # DCT is linear
    per_frame = np.sqrt(2.0 * np.sum(cepstral**2, axis=0))
    return float(10.0 / math.log(10.0) * np.mean(per_frame))


def _magnitude(x: np.ndarray, n_fft: int) -> np.ndarray:
    frames = sliding_window_view(np.pad(x, n_fft // 2), n_fft)[:: n_fft // 4]  # hop n_fft / 4
    spectrum = np.fft.rfft(frames * np.hanning(n_fft), axis=-1)
    return np.sqrt(np.maximum(spectrum.real**2 + spectrum.imag**2, 1e-7))


def _stft(ref: np.ndarray, tst: np.ndarray, sample_rate: int | None = None) -> float:
    total = 0.0
    for n_fft in STFT_SIZES:
        x, y = _magnitude(ref, n_fft), _magnitude(tst, n_fft)
        convergence = np.linalg.norm(y - x) / np.linalg.norm(x)
        total += float(convergence + np.mean(np.abs(np.log(y) - np.log(x))))
    return total / len(STFT_SIZES)


def _pesq(ref: np.ndarray, tst: np.ndarray, sample_rate: int) -> float:
    try:
        from pesq import pesq
    except ImportError as exc:
        raise SpeedyError("PESQ needs the pesq package", "pip install 'openspeedy[eval]'") from exc
    g = math.gcd(sample_rate, 16000)
    if sample_rate != 16000:
        ref, tst = (resample_poly(x, 16000 // g, sample_rate // g) for x in (ref, tst))
    try:
        return float(pesq(16000, ref, tst, "wb"))
    except Exception as exc:  # pesq raises its own types for short or silent audio
        raise SpeedyError(f"PESQ failed: {exc}", "pass at least 0.5 s of speech") from exc


# STOI (Taal et al. 2011), numerically matching the reference MATLAB code and pystoi.
_STOI_FS, _STOI_FRAME, _STOI_NFFT, _STOI_BANDS, _STOI_MINFREQ = 10000, 256, 512, 15, 150.0
_STOI_SEGMENT, _STOI_BETA, _STOI_DYN_RANGE = 30, -15.0, 40.0


@lru_cache(maxsize=8)
def _octave_resample_filter(up: int, down: int) -> np.ndarray:
    """Kaiser-windowed sinc anti-aliasing filter of Octave's `resample` (60 dB rejection)."""
    cutoff = 1.0 / (2 * max(up, down))
    half = math.ceil((60.0 - 8) / (28.714 * cutoff / 10))
    t = np.arange(-half, half + 1)
    h = np.kaiser(2 * half + 1, 0.1102 * (60.0 - 8.7)) * 2 * up * cutoff * np.sinc(2 * cutoff * t)
    return h / np.sum(h)


@lru_cache(maxsize=1)
def _third_octave_matrix() -> np.ndarray:
    freqs = np.linspace(0, _STOI_FS, _STOI_NFFT + 1)[: _STOI_NFFT // 2 + 1]
    k = np.arange(_STOI_BANDS)
    low, high = (_STOI_MINFREQ * 2.0 ** ((2 * k + side) / 6) for side in (-1, 1))
    matrix = np.zeros((_STOI_BANDS, freqs.size))
    for band in range(_STOI_BANDS):
        lo, hi = np.argmin((freqs - low[band]) ** 2), np.argmin((freqs - high[band]) ** 2)
        matrix[band, lo:hi] = 1.0
    return matrix


def _frames(x: np.ndarray) -> np.ndarray:
    """Hann-windowed 50%-overlap frames, starts in range(0, len - frame, hop) as in MATLAB."""
    _need(x.size, _STOI_FRAME + 1, "STOI framing")
    frames = sliding_window_view(x[:-1], _STOI_FRAME)[:: _STOI_FRAME // 2]
    return frames * np.hanning(_STOI_FRAME + 2)[1:-1]


def _overlap_add(frames: np.ndarray) -> np.ndarray:
    hop = _STOI_FRAME // 2
    out = np.zeros((len(frames) + 1) * hop)
    out[: len(frames) * hop] += frames[:, :hop].ravel()
    out[hop:] += frames[:, hop:].ravel()
    return out


def _stoi(ref: np.ndarray, tst: np.ndarray, sample_rate: int) -> float:
    if sample_rate != _STOI_FS:
        g = math.gcd(_STOI_FS, sample_rate)
        up, down = _STOI_FS // g, sample_rate // g
        window = _octave_resample_filter(up, down)
        ref, tst = (resample_poly(s, up, down, window=window) for s in (ref, tst))
    x_frames, y_frames = _frames(ref), _frames(tst)
    energy = 20 * np.log10(np.linalg.norm(x_frames, axis=1) + _EPS)
    keep = energy > np.max(energy) - _STOI_DYN_RANGE  # drop silent frames of the reference
    x, y = _overlap_add(x_frames[keep]), _overlap_add(y_frames[keep])
    if x.size <= _STOI_FRAME or len(x_frames := _frames(x)) < _STOI_SEGMENT:
        raise SpeedyError("STOI needs 30+ frames (~0.4 s) of non-silent speech", "use longer audio")
    # One-third-octave band envelopes cut into 30-frame segments: (bands, segments, 30).
    bands = _third_octave_matrix()
    power = (np.abs(np.fft.rfft(f, n=_STOI_NFFT)) ** 2 for f in (x_frames, _frames(y)))
    xs, ys = (sliding_window_view(np.sqrt(bands @ p.T), _STOI_SEGMENT, axis=1) for p in power)
    norm = np.linalg.norm
    scale = norm(xs, axis=2, keepdims=True) / (norm(ys, axis=2, keepdims=True) + _EPS)
    y_clipped = np.minimum(ys * scale, xs * (1 + 10 ** (-_STOI_BETA / 20)))
    y_clipped = y_clipped - y_clipped.mean(axis=2, keepdims=True)
    xs = xs - xs.mean(axis=2, keepdims=True)
    y_clipped /= norm(y_clipped, axis=2, keepdims=True) + _EPS
    xs /= norm(xs, axis=2, keepdims=True) + _EPS
    return float(np.mean(np.sum(xs * y_clipped, axis=2)))


# Public metrics: align first, then measure.
def snr_db(reference: np.ndarray, test: np.ndarray, sample_rate: int | None = None) -> float:
    """Signal-to-noise ratio of `test` against `reference` in dB, capped at ±SNR_CAP_DB.
    `sample_rate` is unused; it gives every metric the same signature."""
    return _snr(*align(reference, test))


def log_mel_distance(reference: np.ndarray, test: np.ndarray, sample_rate: int) -> float:
    """Mean absolute difference of natural-log mel spectrograms (80 mels, hop 256)."""
    return _mel(*align(reference, test), sample_rate)


def mcd_db(reference: np.ndarray, test: np.ndarray, sample_rate: int) -> float:
    """Mel-cepstral distortion in dB over cepstral coefficients 1..MCD_COEFFICIENTS."""
    return _mcd(*align(reference, test), sample_rate)


def multi_resolution_stft_distance(
    reference: np.ndarray, test: np.ndarray, sample_rate: int | None = None
) -> float:
    """Spectral convergence plus mean log-magnitude distance, averaged over FFT sizes 512/1024/2048.
    `sample_rate` is unused; it gives every metric the same signature."""
    return _stft(*align(reference, test))


def pesq_wb(reference: np.ndarray, test: np.ndarray, sample_rate: int) -> float:
    """Wide-band PESQ (ITU-T P.862.2, MOS-LQO, about 1.0..4.64) at 16 kHz."""
    return _pesq(*align(reference, test), sample_rate)


def stoi(reference: np.ndarray, test: np.ndarray, sample_rate: int) -> float:
    """Short-Time Objective Intelligibility (Taal et al. 2011), about 0..1."""
    return _stoi(*align(reference, test), sample_rate)


class Metric(NamedTuple):
    """A metric's public function `(reference, test, sample_rate) -> float` and its direction."""

    function: Callable[..., float]
    higher_is_better: bool


METRICS: dict[str, Metric] = {
    "snr": Metric(snr_db, True),
    "mel": Metric(log_mel_distance, False),
    "mcd": Metric(mcd_db, False),
    "stft": Metric(multi_resolution_stft_distance, False),
    "pesq": Metric(pesq_wb, True),
    "stoi": Metric(stoi, True),
}
_ON_ALIGNED: dict[str, Callable[[np.ndarray, np.ndarray, int], float]] = dict(
    snr=_snr, mel=_mel, mcd=_mcd, stft=_stft, pesq=_pesq, stoi=_stoi
)


def _check_metric(name: str) -> str:
    if name not in METRICS:
        raise SpeedyError(f"unknown quality metric {name!r}", f"use one of: {', '.join(METRICS)}")
    return name


def compare(
    reference: np.ndarray,
    test: np.ndarray,
    sample_rate: int,
    metrics: Sequence[str] = ("snr", "mel", "mcd", "pesq", "stoi"),
) -> dict[str, float]:
    """Align once and compute the named metrics, in the order given."""
    names = [_check_metric(name) for name in dict.fromkeys(metrics)]
    ref, tst = align(reference, test)
    return {name: _ON_ALIGNED[name](ref, tst, sample_rate) for name in names}


def measure(
    reference: np.ndarray,
    test: np.ndarray,
    sample_rate: int,
    metrics: Sequence[str],
    failures: list[str] | None = None,
) -> dict[str, float | None]:
    """Like `compare`, but a metric that cannot be measured (PESQ finding no speech in noise,
    a missing package, non-finite audio) is None, its reason appended to `failures`."""
    try:
        ref, tst = align(reference, test)
    except SpeedyError as exc:
        if failures is not None:
            failures.append(exc.problem)
        return dict.fromkeys(metrics)
    found: dict[str, float | None] = {}
    for name in dict.fromkeys(metrics):
        try:
            found[name] = _ON_ALIGNED[_check_metric(name)](ref, tst, sample_rate)
        except SpeedyError as exc:
            found[name] = None
            if failures is not None:
                failures.append(f"{name}: {exc.problem}")
    return found


_BUDGET_TERM = re.compile(r"\s*([A-Za-z_]+)\s*(>=|<=)\s*([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*")
_BUDGET_EXAMPLE = "write METRIC>=VALUE or METRIC<=VALUE, comma separated, e.g. 'pesq>=4.0,mel<=0.5'"


@dataclass(frozen=True)
class Budget:
    """One quality requirement, e.g. `pesq>=4.0`."""

    metric: str
    op: Literal[">=", "<="]
    threshold: float

    def holds(self, value: float | None) -> bool:
        """Whether `value` meets the requirement (an unmeasured or NaN value never does)."""
        if value is None:
            return False
        return value >= self.threshold if self.op == ">=" else value <= self.threshold

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.threshold:g}"


AUDIO_METRICS = {name: metric.higher_is_better for name, metric in METRICS.items()}


def parse_budget(text: str, known: Mapping[str, bool] | None = AUDIO_METRICS) -> list[Budget]:
    """Parse comma-separated requirements such as "snr>=20,mel<=0.5" on the `known` metrics
    (name -> higher is better; None: any name, the syntax alone is checked)."""
    terms = [term for term in text.split(",") if term.strip()]
    if not terms:
        raise SpeedyError("empty quality budget", _BUDGET_EXAMPLE)
    budgets = []
    for term in terms:
        match = _BUDGET_TERM.fullmatch(term)
        threshold = float(match.group(3)) if match else math.nan
        if match is None or not math.isfinite(threshold):
            raise SpeedyError(f"cannot parse quality budget term {term.strip()!r}", _BUDGET_EXAMPLE)
        op: Literal[">=", "<="] = ">=" if match.group(2) == ">=" else "<="
        metric = match.group(1).lower()
        if known is not None and metric not in known:
            raise SpeedyError(
                f"unknown quality metric {metric!r} in the budget",
                f"use one of: {', '.join(known)}",
            )
        if metric == "pesq" and importlib.util.find_spec("pesq") is None:
            raise SpeedyError(
                "a PESQ budget needs the pesq package", "pip install 'openspeedy[eval]'"
            )
        budgets.append(Budget(metric, op, threshold))
    return budgets
