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
    """Summed squared error for every (low, high) pair: prefix sums of the counts and of their
    first and second moments give each pair's clipped tails in constant time."""
    centres = (edges[:-1] + edges[1:]) / 2
    moments = [np.concatenate([[0.0], np.cumsum(counts * centres**k)]) for k in range(3)]
    below = np.searchsorted(centres, lows, side="left")  # bins clipped up to `low`
    above = np.searchsorted(centres, highs, side="right")  # bins from here clipped to `high`
    n, s, q = (m[below] for m in moments)
    under = q - 2 * lows * s + lows**2 * n  # sum of count * (centre - low)^2 below `low`
    n_hi, s_hi, q_hi = (m[-1] - m[above] for m in moments)
    over = q_hi - 2 * highs * s_hi + highs**2 * n_hi
    inside = moments[0][above][None, :] - moments[0][below][:, None]
    step = (highs[None, :] - lows[:, None]) / LEVELS
    return under[:, None] + over[None, :] + inside * step**2 / 12


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
