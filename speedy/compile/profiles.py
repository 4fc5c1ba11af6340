"""Optimization profiles: a min/opt/max range per symbolic dim, derived from real data or given.

Dims that appear only on axis 0 of the inputs are batch dims: utterances run one at a time, so
the data says nothing about them and they keep the recipe's range. Every other symbolic dim is
a length dim: its range spans the lengths of the data's utterances, split into several
profiles (each at most `span` times wider than its start) when those lengths spread widely.
"""

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import ValidationError

from speedy.console import notice
from speedy.errors import SpeedyError
from speedy.shapes import Profile, fits
from speedy.specs import DimRange, Feeds, TensorSpec, base, derived, symbol_sizes, symbols

SHAPES_EXAMPLE = (
    "write NAME:MIN,OPT,MAX where NAME is a dim (frames:8,512,4000) "
    "or an input with full shapes (mel:1x80x8,1x80x512,1x80x4000)"
)


def length_dims(inputs: Sequence[TensorSpec]) -> list[str]:
    """Symbols found on some axis other than 0 (sequence lengths, not batch sizes)."""
    later = {base(d) for spec in inputs for d in spec.shape[1:] if isinstance(d, str)}
    return [d for d in symbols(inputs) if d in later]


def data_lengths(inputs: Sequence[TensorSpec], fed: Sequence[Feeds]) -> dict[str, list[int]]:
    """Each length dim's size in every one of the feeds a graph received, in order."""
    sizes = [symbol_sizes(inputs, {k: v.shape for k, v in feeds.items()}) for feeds in fed]
    return {dim: [s[dim] for s in sizes] for dim in length_dims(inputs)}


def _int(text: str, option: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise SpeedyError(
            f"--shapes {option!r}: {text.strip()!r} is not a whole number", SHAPES_EXAMPLE
        ) from None


def _range(values: Sequence[int], option: str) -> DimRange:
    try:
        return DimRange(min=values[0], opt=values[1], max=values[2])
    except ValidationError:
        raise SpeedyError(
            f"--shapes {option!r}: need 0 < min <= opt <= max, got {', '.join(map(str, values))}",
            SHAPES_EXAMPLE,
        ) from None


def _input_ranges(spec: TensorSpec, parts: Sequence[str], option: str) -> dict[str, DimRange]:
    """Ranges of `spec`'s symbolic dims from three full shapes such as 1x80x8."""
    shapes = [[_int(v, option) for v in part.split("x")] for part in parts]
    if any(len(shape) != len(spec.shape) for shape in shapes):
        raise SpeedyError(
            f"--shapes {option!r}: {spec.name} has rank {len(spec.shape)} ({spec.describe()})",
            SHAPES_EXAMPLE,
        )
    ranges = {}
    for axis, dim in enumerate(spec.shape):
        values = [shape[axis] for shape in shapes]
        if isinstance(dim, str):
            if derived(dim) is None:  # a derived dim follows from its base's range
                ranges[dim] = _range(values, option)
        elif any(v != dim for v in values):
            raise SpeedyError(
                f"--shapes {option!r}: axis {axis} of {spec.name} is fixed at {dim}",
                f"give {dim} on that axis ({spec.describe()})",
            )
    return ranges


def parse_shapes(
    options: Sequence[str], specs: Sequence[TensorSpec], dims: Mapping[str, DimRange]
) -> dict[str, DimRange]:
    """Ranges given as `--shapes NAME:MIN,OPT,MAX`, each within the recipe's declared range."""
    inputs = {s.name: s for s in specs}
    ranges: dict[str, DimRange] = {}
    for option in options:
        name, colon, values = option.partition(":")
        parts, name = values.split(","), name.strip()
        if not colon or len(parts) != 3:
            raise SpeedyError(f"cannot parse --shapes {option!r}", SHAPES_EXAMPLE)
        if name in inputs:
            found = _input_ranges(inputs[name], parts, option)
        elif name in dims:
            found = {name: _range([_int(p, option) for p in parts], option)}
        else:
            raise SpeedyError(
                f"--shapes {option!r} names {name!r}, which is neither a dim nor an input",
                f"use a dim ({', '.join(dims)}) or an input ({', '.join(inputs)})",
            )
        for dim, found_range in found.items():
            if ranges.setdefault(dim, found_range) != found_range:
                raise SpeedyError(
                    f"--shapes gives {dim} two different ranges", "give each dim one range"
                )
            declared = dims[dim]
            if found_range.min < declared.min or found_range.max > declared.max:
                raise SpeedyError(
                    f"--shapes {dim} {found_range.min}..{found_range.max} exceeds the recipe's "
                    f"range {declared.min}..{declared.max}",
                    f"stay within it, or widen dims.{dim} in the recipe and rebuild",
                )
    return ranges


def split_range(low: int, high: int, span: float, max_profiles: int) -> list[tuple[int, int]]:
    """Contiguous sub-ranges covering low..high, each at most `span` times wider than its start
    (fewer, wider ones when that would take more than `max_profiles`)."""
    count = 1 if high <= low * span else math.ceil(math.log(high / low) / math.log(span))
    count = min(count, max_profiles)
    edges = [low, *(round(low * (high / low) ** (i / count)) for i in range(1, count)), high + 1]
    edges = sorted(set(edges))
    return [(start, end - 1) for start, end in itertools.pairwise(edges)]


def _clamped(dim: str, values: list[int], declared: DimRange, max_seq_len: int | None) -> DimRange:
    low, high = max(min(values), declared.min), min(max(values), declared.max)
    if outside := sum(not declared.min <= v <= declared.max for v in values):
        notice(
            f"{outside} clip(s) have {dim} outside the recipe's range "
            f"{declared.min}..{declared.max}; the profiles leave them out"
        )
    if max_seq_len is not None:
        if max_seq_len not in declared:
            raise SpeedyError(
                f"--max-seq-len {max_seq_len} is outside the recipe's {dim} range "
                f"{declared.min}..{declared.max}",
                f"pick a value in that range, or widen dims.{dim} in the recipe",
            )
        if longer := sum(v > max_seq_len for v in values):
            notice(
                f"{longer} clip(s) are longer than --max-seq-len {max_seq_len} {dim}; "
                "cut them into pieces to run them"
            )
        low, high = min(low, max_seq_len), max_seq_len
    return DimRange(min=low, opt=low, max=high)


def _opt(values: Sequence[int], start: int, end: int) -> int:
    inside = [v for v in values if start <= v <= end]
    return int(np.median(inside)) if inside else round(math.sqrt(start * end))


def derive_profiles(
    inputs: Sequence[TensorSpec],
    dims: Mapping[str, DimRange],
    lengths: Mapping[str, list[int]],
    overrides: Mapping[str, DimRange] | None = None,
    max_seq_len: int | None = None,
    span: float = 4.0,
    max_profiles: int = 4,
) -> list[Profile]:
    """Profiles covering every length in `lengths`, split along the widest-spread length dim.

    `overrides` (from --shapes) replace a dim's range in every profile; `max_seq_len` sets the
    largest length of the one data-derived length dim.
    """
    overrides = dict(overrides or {})
    derived = [d for d in length_dims(inputs) if d not in overrides]
    if max_seq_len is not None and len(derived) != 1:
        raise SpeedyError(
            f"--max-seq-len needs exactly one data-derived length dim, this model has {derived}",
            "give each length dim's range with --shapes instead",
        )
    given = {d: overrides.get(d, dims[d]) for d in symbols(inputs) if d not in derived}
    if not derived:
        return [given]
    ranges = {d: _clamped(d, lengths[d], dims[d], max_seq_len) for d in derived}
    primary = max(derived, key=lambda d: ranges[d].max / ranges[d].min)
    profiles = []
    for start, end in split_range(ranges[primary].min, ranges[primary].max, span, max_profiles):
        rows = [i for i, v in enumerate(lengths[primary]) if start <= v <= end]
        found = {primary: DimRange(min=start, opt=_opt(lengths[primary], start, end), max=end)}
        for dim in derived:
            if dim != primary:
                low, high = ranges[dim].min, ranges[dim].max
                values = [lengths[dim][i] for i in rows] or lengths[dim]
                found[dim] = DimRange(min=low, opt=_opt(values, low, high), max=high)
        profiles.append({d: given[d] if d in given else found[d] for d in symbols(inputs)})
    return profiles


def coverage_report(profiles: Sequence[Profile], lengths: Mapping[str, list[int]]) -> dict:
    """How many utterances the profiles cover, and the spread of their lengths."""
    clips = len(next(iter(lengths.values()), []))
    covered = sum(
        any(fits(p, {d: v[i] for d, v in lengths.items()}) for p in profiles) for i in range(clips)
    )
    spread = {
        d: {"min": min(v), "median": float(np.median(v)), "max": max(v)}
        for d, v in lengths.items()
        if v
    }
    return {"clips": clips, "covered": covered, "lengths": spread}
