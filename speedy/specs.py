"""Tensor and dimension specs shared by recipes, manifests and the runtime."""

from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, PositiveInt, model_validator

Dim = int | str  # a fixed size, or the name of a symbolic dimension
Feeds = dict[str, np.ndarray]  # named tensors: a graph's inputs or outputs


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
        return tuple(d if isinstance(d, int) else sizes[d] for d in self.shape)


def symbols(specs: Sequence[TensorSpec]) -> list[str]:
    """The symbolic dims of `specs`, in order of first appearance."""
    return list(dict.fromkeys(d for spec in specs for d in spec.shape if isinstance(d, str)))


def symbol_sizes(
    specs: Sequence[TensorSpec], shapes: Mapping[str, Sequence[int]]
) -> dict[str, int]:
    """The size of each symbolic dim in tensors of the given shapes (already checked)."""
    return {
        dim: int(size)
        for spec in specs
        if spec.name in shapes
        for dim, size in zip(spec.shape, shapes[spec.name], strict=True)
        if isinstance(dim, str)
    }
