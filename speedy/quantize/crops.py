"""Model inputs for calibration: whole utterances cut into crops that fit the declared dims.

Crops are evenly spaced windows over each utterance, taken round-robin over the examples (the
first window of every example, then the second, ...), so a small count still covers every
example. Each calibration crop is checked against the graph's declared dims before any session
sees it.
"""

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from speedy.errors import SpeedyError
from speedy.runtime import check_feeds
from speedy.specs import Derived, DimRange, Feeds, TensorSpec, base, derived


@dataclass
class Crop:
    """One calibration input: where it was cut from, and the feeds."""

    name: str
    feeds: Feeds


def crop_sizes(
    dims: Mapping[str, DimRange], overrides: dict[str, int], croppable: Sequence[str] | None
) -> dict[str, int]:
    """Longest crop per symbolic dim that may be cut (`croppable`, None: all): `overrides`,
    else half the dim's `opt` (never below `min`)."""
    allowed = dims.keys() if croppable is None else set(croppable)
    if unknown := overrides.keys() - allowed:
        raise SpeedyError(
            f"crop names dim(s) {sorted(unknown)} that calibration cannot cut",
            f"crop dims of the model that may be cut: {sorted(allowed)}",
        )
    return {
        name: overrides.get(name, max(r.min, r.opt // 2))
        for name, r in dims.items()
        if name in allowed
    }


def window_starts(length: int, size: int) -> list[int]:
    """Starts of the fewest evenly spaced `size`-long windows that cover `length`."""
    if length <= size:
        return [0]
    count = -(-length // size)
    return [int(s) for s in np.rint(np.linspace(0, length - size, count))]


def cut(
    feeds: Feeds, specs: Sequence[TensorSpec], sizes: Mapping[str, int]
) -> list[tuple[str, Feeds]]:
    """Windows of `feeds` along every symbolic dim (of `specs`) longer than its crop size (an
    axis of a dim derived from it cut alike), with labels; tensors without a spec stay whole."""
    axes: dict[str, list[tuple[str, int, Derived | None]]] = {}  # symbol -> where it sizes
    lengths: dict[str, int] = {}
    for spec in specs:
        for axis, dim in enumerate(spec.shape):
            if isinstance(dim, str) and spec.name in feeds and axis < feeds[spec.name].ndim:
                rule = derived(dim)
                axes.setdefault(base(dim), []).append((spec.name, axis, rule))
                if rule is None:
                    lengths[dim] = feeds[spec.name].shape[axis]
    long = [d for d in lengths if d in sizes and lengths[d] > sizes[d]]
    starts = [[(d, s) for s in window_starts(lengths[d], sizes[d])] for d in long]
    crops = []
    for combination in itertools.product(*starts):
        cropped = dict(feeds)
        for dim, start in combination:
            for name, axis, rule in axes[dim]:
                first = start * rule.value if rule and rule.op == "*" else start
                length = rule.of(sizes[dim]) if rule else sizes[dim]
                index = [slice(None)] * cropped[name].ndim
                index[axis] = slice(first, first + length)
                cropped[name] = cropped[name][tuple(index)]
        label = ",".join(f"{d}={s}:{s + sizes[d]}" for d, s in combination)
        crops.append((f"[{label}]" if label else "", cropped))
    return crops


def select_crops(
    named: Sequence[tuple[str, Feeds]],
    specs: Sequence[TensorSpec],
    dims: Mapping[str, DimRange] | None,
    sizes: Mapping[str, int],
    count: int,
) -> list[Crop]:
    """Up to `count` crops of the named feeds, round-robin over them; with `dims`, every crop is
    checked against `specs` and the dims first, so a bad example fails even when it would not be
    chosen."""
    per_example = []
    for name, feeds in named:
        crops = [Crop(name + label, f) for label, f in cut(feeds, specs, sizes)]
        for crop in crops if dims is not None else ():
            _check(crop, specs, dims)
        per_example.append(crops)
    rounds = itertools.zip_longest(*per_example)
    return [crop for row in rounds for crop in row if crop is not None][:count]


def _check(crop: Crop, specs: Sequence[TensorSpec], dims: Mapping[str, DimRange]) -> None:
    try:
        check_feeds(specs, dims, crop.feeds)
    except SpeedyError as exc:
        raise SpeedyError(
            f"calibration input {crop.name} does not fit the model: {exc.problem}",
            f"drop it from the calibration source, or fix it ({exc.fix})",
        ) from exc
