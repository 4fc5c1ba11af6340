"""The TensorRT backend's build options, and what an engine records: the TensorRT version and
GPU it is tied to, and its profiles."""

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from speedy.shapes import Profile


class TrtSection(BaseModel):
    """The runtime section of a TensorRT engine (engines are not portable across either)."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["trt"] = "trt"
    tensorrt: str
    gpu: str
    compute_capability: str
    profiles: list[Profile]


class TrtOptions(BaseModel):
    """How TensorRT builds an engine."""

    model_config = ConfigDict(extra="forbid")

    timing_cache: Path | None = Field(
        None, description="TensorRT timing cache file (read, then updated)."
    )
    workspace_mb: PositiveInt | None = Field(
        None,
        description="TensorRT workspace limit in MiB (trt, or ort's TensorRT provider).",
        json_schema_extra={"flag": "--workspace"},
    )
