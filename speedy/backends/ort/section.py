"""What a compiled ONNX Runtime graph records: its session settings and TensorRT-provider profiles.

Pure data (onnxruntime is imported only to build session options), so a manifest reads without it.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from speedy.shapes import Profile

Level = Literal["disable", "basic", "extended", "all"]
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


class OrtSettings(BaseModel):
    """How a compiled ONNX Runtime graph is meant to be run."""

    model_config = ConfigDict(extra="forbid")

    graph_optimization_level: Level
    intra_op_num_threads: int = 0  # 0: ONNX Runtime's default (one per physical core)
    inter_op_num_threads: int = 1
    execution_mode: Literal["sequential", "parallel"] = "sequential"
    providers: list[tuple[str, dict[str, str]]]


class OrtSection(BaseModel):
    """The runtime section of a graph compiled for ONNX Runtime (`speedy compile --backend ort`)."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["ort"] = "ort"
    settings: OrtSettings
    profiles: list[Profile] = Field(default_factory=list)  # TensorRT provider only
