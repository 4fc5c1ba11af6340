"""Tensor and dimension specs shared by recipes, manifests and the runtime."""

from pydantic import BaseModel, ConfigDict, PositiveInt, model_validator

Dim = int | str  # a fixed size, or the name of a symbolic dimension


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

    def resolve(self, sizes: dict[str, int]) -> tuple[int, ...]:
        """The concrete shape with each symbol replaced by its size."""
        return tuple(d if isinstance(d, int) else sizes[d] for d in self.shape)
