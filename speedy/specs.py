"""Tensor and dimension specs shared by recipes, manifests and the runtime."""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, PositiveInt, model_validator

# A fixed size, the name of a symbolic dimension, or one derived from another: "past+1" (a decode
# step's attention mask over the past and itself), "frames*1920" (a codec's samples).
Dim = int | str
Feeds = dict[str, np.ndarray]  # named tensors: a graph's inputs or outputs
_DERIVED = re.compile(r"^(\w+)([+*])(\d+)$")


@dataclass(frozen=True)
class Derived:
    """A dim that follows from another: `base + offset` or `base * factor`."""

    base: str
    op: str  # "+" or "*"
    value: int

    def of(self, size: int) -> int:
        return size + self.value if self.op == "+" else size * self.value

    def base_of(self, size: int) -> int | None:
        """The base size giving `size`, or None when no whole size does."""
        if self.op == "+":
            return size - self.value
        return size // self.value if size % self.value == 0 else None


def derived(dim: Dim) -> Derived | None:
    """How a derived dim follows from its base (None for a fixed size or a plain symbol)."""
    match = _DERIVED.match(dim) if isinstance(dim, str) else None
    return Derived(match.group(1), match.group(2), int(match.group(3))) if match else None


def base(dim: str) -> str:
    """The symbol a (possibly derived) dim is sized by."""
    found = derived(dim)
    return found.base if found else dim


class DimRange(BaseModel):
    """Smallest, typical and largest size of a symbolic dimension."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min: PositiveInt
    opt: PositiveInt
    max: PositiveInt

    @model_validator(mode="after")
    def _ordered(self) -> "DimRange":
        if not self.min <= self.opt <= self.max:
            raise ValueError(f"need min <= opt <= max, got {self.min}, {self.opt}, {self.max}")
        return self

    def __contains__(self, size: int) -> bool:
        return self.min <= size <= self.max


class TensorSpec(BaseModel):
    """Name, element type and shape of one model input or output."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    dtype: str
    shape: list[Dim]

    def describe(self) -> str:
        return f"{self.name}: {self.dtype}[{', '.join(map(str, self.shape))}]"

    def resolve(self, sizes: Mapping[str, int]) -> tuple[int, ...]:
        """The concrete shape with each symbol replaced by its size."""
        return tuple(_size(d, sizes) for d in self.shape)


def _size(dim: Dim, sizes: Mapping[str, int]) -> int:
    if isinstance(dim, int):
        return dim
    found = derived(dim)
    return found.of(sizes[found.base]) if found else sizes[dim]


def symbols(specs: Sequence[TensorSpec]) -> list[str]:
    """The symbols that size `specs` (a derived dim's base), in order of first appearance."""
    return list(dict.fromkeys(base(d) for spec in specs for d in spec.shape if isinstance(d, str)))


def symbol_sizes(
    specs: Sequence[TensorSpec], shapes: Mapping[str, Sequence[int]]
) -> dict[str, int]:
    """The size of each symbol in tensors of the given shapes (already checked); a symbol seen
    only through a derived dim is sized from it."""
    sizes: dict[str, int] = {}
    for spec in specs:
        for dim, size in zip(spec.shape, shapes.get(spec.name, ()), strict=False):
            if not isinstance(dim, str):
                continue
            found = derived(dim)
            if found is None:
                sizes[dim] = int(size)
            elif (inverse := found.base_of(int(size))) is not None:
                sizes.setdefault(found.base, inverse)
    return sizes
