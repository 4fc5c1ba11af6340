"""What a model is, independent of its file format: family, task, settings, audio, dim ranges.

Pure data: reading it imports neither torch nor the families. `speedy.families.resolve` turns it
into the family's adapter where the network is needed (export, eager PyTorch).
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat

from speedy.audio.mel import AudioSpec
from speedy.specs import DimRange

IMPORTED_FAMILY = "imported"  # an imported ONNX file's: no PyTorch family, the file is the model


class ParityOptions(BaseModel):
    """Sizes to compare at (never the tracing size) and the largest allowed error."""

    model_config = ConfigDict(extra="forbid")

    sizes: list[dict[str, int]] = Field(min_length=1)
    atol: PositiveFloat = 1e-4


class CheckpointInfo(BaseModel):
    """The weights a model was built from: the file's name and its SHA-256."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    file: str
    digest: str

    def describe(self) -> str:
        return f"{self.file} ({self.digest[:19]}…)"


class ModelSpec(BaseModel):
    """Embedded in every manifest so any artifact can be rebuilt, fed and checked on its own."""

    model_config = ConfigDict(extra="forbid")

    recipe: str
    family: str
    task: str  # what the model does (speedy.tasks): vocoder, text_to_mel, ...
    network: dict[str, Any]
    audio: AudioSpec
    dims: dict[str, DimRange]
    parity: ParityOptions
    task_settings: dict[str, Any] = Field(default_factory=dict)  # typed by the task
    factory: str | None = None  # "module:function" building a custom network of this family
    checkpoint: CheckpointInfo | None = None  # None: the family's seeded weights

    def sizes(self, overrides: dict[str, int] | None = None) -> dict[str, int]:
        """Each symbolic dim's typical (`opt`) size, with `overrides` applied."""
        return {name: r.opt for name, r in self.dims.items()} | (overrides or {})

    def same_model(self, other: "ModelSpec") -> str | None:
        """The first field in which `other` describes another network, or None."""
        for key in ("recipe", "family", "task", "network", "audio", "factory"):
            if getattr(self, key) != getattr(other, key):
                return key
        return None
