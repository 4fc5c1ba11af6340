"""Optimization profiles as data: which profile covers given sizes, and their concrete shapes.

Below both the runtime (which picks a profile per call) and `speedy compile` (which derives
profiles from data, see `speedy.compile.profiles`).
"""

import math
from collections.abc import Mapping, Sequence

from pydantic import TypeAdapter

from speedy.errors import SpeedyError
from speedy.specs import DimRange, TensorSpec

Profile = dict[str, DimRange]
PROFILES = TypeAdapter(list[dict[str, DimRange]])


def fits(profile: Profile, sizes: Mapping[str, int]) -> bool:
    return all(sizes[d] in r for d, r in profile.items() if d in sizes)


def describe(profile: Profile) -> str:
    return ", ".join(f"{d} {r.min}..{r.max} (opt {r.opt})" for d, r in profile.items())


def select_profile(profiles: Sequence[Profile], sizes: Mapping[str, int]) -> int:
    """The profile covering `sizes` whose `opt` is nearest; a clear error when none covers them."""
    candidates = [i for i, profile in enumerate(profiles) if fits(profile, sizes)]
    if not candidates:
        given = ", ".join(f"{d}={n}" for d, n in sizes.items())
        raise SpeedyError(
            f"input sizes {given} are outside every optimization profile "
            f"({'; '.join(describe(p) for p in profiles)})",
            "cut the input into pieces a profile covers, or recompile with --shapes or "
            "--max-seq-len covering it",
        )

    def distance(index: int) -> float:
        profile = profiles[index]
        return sum(abs(math.log(sizes[d] / r.opt)) for d, r in profile.items() if d in sizes)

    return min(candidates, key=distance)


def profile_shapes(
    profile: Profile, inputs: Sequence[TensorSpec]
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """Each input's (min, opt, max) concrete shape under `profile`."""
    corners = [
        {d: getattr(r, corner) for d, r in profile.items()} for corner in ("min", "opt", "max")
    ]
    return {spec.name: tuple(spec.resolve(c) for c in corners) for spec in inputs}  # type: ignore[misc]
