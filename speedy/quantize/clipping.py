"""Per-tensor clipping search: the activation range that minimizes the 8-bit quantization error.

Min/max ranges let a few outliers set the step size of every value; a narrower range rounds the
bulk more finely and clips the tail. For a tensor's histogram (from real calibration data) this
picks the [low, high] pair with the least expected squared error: step^2 / 12 for values inside
(uniform rounding error), (x - clip(x))^2 for values outside. Candidates are tail quantiles from
1e-7 to 20% on each side.
"""

import numpy as np

LEVELS = 255  # uint8 activations: 256 codes, 255 steps
TAILS = np.geomspace(1e-7, 0.2, 64)


def _candidates(cumulative: np.ndarray, edges: np.ndarray, upper: bool) -> np.ndarray:
    total = cumulative[-1]
    if upper:
        found = np.searchsorted(cumulative, (1 - TAILS) * total, side="left") + 1
        values = np.append(edges[np.minimum(found, edges.size - 1)], edges[-1])
        return np.unique(values[values >= 0])
    found = np.searchsorted(cumulative, TAILS * total, side="left")
    values = np.append(edges[found], edges[0])
    return np.unique(values[values <= 0])


def expected_error(counts: np.ndarray, edges: np.ndarray, low: float, high: float) -> float:
    """Mean squared quantization error of the histogram's values over the range [low, high]."""
    return float(_errors(counts, edges, np.array([low]), np.array([high]))[0, 0] / counts.sum())


def _errors(counts: np.ndarray, edges: np.ndarray, lows: np.ndarray, highs: np.ndarray):
    centres = (edges[:-1] + edges[1:]) / 2
    low, high = lows[:, None, None], highs[None, :, None]
    step = (high - low) / LEVELS
    clipped = np.clip(centres, low, high)
    inside = (centres >= low) & (centres <= high)
    error = np.where(inside, step**2 / 12, (centres - clipped) ** 2)
    return (error * counts).sum(axis=-1)


def mse_range(counts: np.ndarray, edges: np.ndarray) -> tuple[float, float]:
    """The clipping range (containing 0) with the least expected squared error, from a histogram
    of `len(edges) - 1` bins; the full range when the histogram is empty."""
    low, high = float(min(edges[0], 0.0)), float(max(edges[-1], 0.0))
    if counts.sum() == 0 or high - low <= 0:
        return low, high
    cumulative = np.cumsum(counts)
    lows = np.append(_candidates(cumulative, edges, upper=False), low)
    highs = np.append(_candidates(cumulative, edges, upper=True), high)
    errors = _errors(counts, edges, lows, highs)
    i, j = np.unravel_index(np.argmin(errors), errors.shape)
    return float(min(lows[i], 0.0)), float(max(highs[j], 0.0))
