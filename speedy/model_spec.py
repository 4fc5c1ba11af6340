"""What a model is, independent of its file format: family, network settings, audio, dim ranges."""

import importlib
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, model_validator

from speedy.audio.mel import AudioSpec
from speedy.errors import SpeedyError
from speedy.families import Family, family_class
from speedy.specs import DimRange, TensorSpec


class ParityOptions(BaseModel):
    """Sizes to compare at (never the tracing size) and the largest allowed error."""

    model_config = ConfigDict(extra="forbid")

    sizes: list[dict[str, int]] = Field(min_length=1)
    atol: PositiveFloat = 1e-4


class ModelSpec(BaseModel):
    """Embedded in every manifest so any artifact can be rebuilt, fed and checked on its own."""

    model_config = ConfigDict(extra="forbid")

    recipe: str
    family: str
    network: dict[str, Any]
    audio: AudioSpec
    dims: dict[str, DimRange]
    parity: ParityOptions
    factory: str | None = None  # "module:function" building a custom network of this family

    @model_validator(mode="after")
    def _check(self) -> "ModelSpec":
        family_class(self.family).Params.model_validate(self.network)
        adapter = self.adapter()
        symbols = {d for spec in adapter.inputs() for d in spec.shape if isinstance(d, str)}
        if missing := symbols - self.dims.keys():
            raise ValueError(f"dims has no range for {sorted(missing)}")
        for sizes in self.parity.sizes:
            if unknown := sizes.keys() - self.dims.keys():
                raise ValueError(f"parity size names unknown dims {sorted(unknown)}")
        return self

    def adapter(self) -> Family:
        """The family adapter configured with this model's settings."""
        cls = family_class(self.family)
        return cls(cls.Params.model_validate(self.network), self.audio)

    def build_module(self) -> torch.nn.Module:
        """The network (the family's, or the `factory`'s), in eval mode, weights not loaded."""
        if self.factory is None:
            return self.adapter().build()
        return call_factory(self.factory).eval()

    def sizes(self, overrides: dict[str, int] | None = None) -> dict[str, int]:
        """Each symbolic dim's typical (`opt`) size, with `overrides` applied."""
        return {name: r.opt for name, r in self.dims.items()} | (overrides or {})

    def inputs(self) -> list[TensorSpec]:
        return self.adapter().inputs()

    def outputs(self) -> list[TensorSpec]:
        return self.adapter().outputs()


def call_factory(reference: str) -> torch.nn.Module:
    """Import `module:function` and call it to build a network."""
    module_name, _, function_name = reference.partition(":")
    fix = "pass --model as module:function, importable from the current environment"
    try:
        factory = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise SpeedyError(f"cannot import model factory '{reference}': {exc}", fix) from exc
    module = factory()
    if not isinstance(module, torch.nn.Module):
        raise SpeedyError(
            f"'{reference}' returned {type(module).__name__}, not a torch module", fix
        )
    return module
