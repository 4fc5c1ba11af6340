"""What a TensorRT engine records: the TensorRT version and GPU it is tied to, and its profiles."""

from typing import Literal

from pydantic import BaseModel, ConfigDict

from speedy.shapes import Profile


class TrtSection(BaseModel):
    """The runtime section of a TensorRT engine (engines are not portable across either)."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["trt"] = "trt"
    tensorrt: str
    gpu: str
    compute_capability: str
    profiles: list[Profile]
