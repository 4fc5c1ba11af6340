"""The ONNX Runtime backend's compile options, and what a compiled graph records: its session
settings and TensorRT-provider profiles.

Pure data (onnxruntime is imported only to build session options), so a manifest reads without it.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator

from speedy.shapes import Profile

Level = Literal["disable", "basic", "extended", "all"]
# How a CPU session holds weights its artifact's graphs share (`speedy.weight_pool`): `packed`,
# each graph its own copy in MLAS's packed layout (fastest); `shared`, one mapped copy of the
# file that every graph reads in place (least memory; products repack per call).
Weights = Literal["packed", "shared"]
Provider = Literal["cpu", "cuda", "tensorrt"]
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
# Provider options a manifest may carry: settings of the run, never paths or libraries to load
# (`trt_extra_plugin_lib_paths` would load a shared library; cache paths are the runtime's own).
SAFE_OPTIONS: dict[str, frozenset[str]] = {
    PROVIDERS["cpu"]: frozenset(),
    PROVIDERS["cuda"]: frozenset(
        [
            "device_id",
            "cudnn_conv_algo_search",
            "cudnn_conv_use_max_workspace",
            "use_tf32",
            "arena_extend_strategy",
            "gpu_mem_limit",
            "do_copy_in_default_stream",
        ]
    ),
    PROVIDERS["tensorrt"]: frozenset(
        [
            "device_id",
            "trt_fp16_enable",
            "trt_int8_enable",
            "trt_max_workspace_size",
            "trt_engine_cache_enable",
            "trt_timing_cache_enable",
            "trt_builder_optimization_level",
            "trt_profile_min_shapes",
            "trt_profile_opt_shapes",
            "trt_profile_max_shapes",
            "trt_min_subgraph_size",
            "trt_max_partition_iterations",
        ]
    ),
}


class OrtSettings(BaseModel):
    """How a compiled ONNX Runtime graph is meant to be run."""

    model_config = ConfigDict(extra="forbid")

    graph_optimization_level: Level
    intra_op_num_threads: int = 0  # 0: ONNX Runtime's default (one per physical core)
    inter_op_num_threads: int = 1
    execution_mode: Literal["sequential", "parallel"] = "sequential"
    weights: Weights = "packed"
    providers: list[tuple[str, dict[str, str]]]

    @field_validator("providers")
    @classmethod
    def _safe_providers(
        cls, providers: list[tuple[str, dict[str, str]]]
    ) -> list[tuple[str, dict[str, str]]]:
        for name, options in providers:
            if name not in SAFE_OPTIONS:
                raise ValueError(f"unknown provider {name!r} (known: {', '.join(SAFE_OPTIONS)})")
            if unsafe := sorted(options.keys() - SAFE_OPTIONS[name]):
                raise ValueError(f"{name} option {unsafe[0]!r} is not one a manifest may set")
        return providers


class OrtSection(BaseModel):
    """The runtime section of a graph compiled for ONNX Runtime (`speedy compile --backend ort`)."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["ort"] = "ort"
    settings: OrtSettings
    profiles: list[Profile] = Field(default_factory=list)  # TensorRT provider only


class OrtOptions(BaseModel):
    """How ONNX Runtime optimizes a graph ahead of time and runs it."""

    model_config = ConfigDict(extra="forbid")

    ort_level: Level = Field("all", description="ORT graph optimization level.")
    providers: list[Provider] = Field(
        default_factory=lambda: ["cpu"],
        description="ORT provider at run time: cpu, cuda, tensorrt (repeatable).",
        json_schema_extra={"flag": "--provider"},
    )
    ort_threads: int = Field(
        0, ge=0, description="ORT intra-op threads for the runtime (0: ORT's default)."
    )
    ort_weights: Weights = Field(
        "packed",
        description="ORT on CPU, weights the graphs share: packed (a packed copy per graph, "
        "fastest) or shared (one copy read in place, least memory).",
    )
    fft_conv: bool = Field(False, description="ORT on CPU: long 1-D convs as block FFT convs.")
    workspace_mb: PositiveInt | None = Field(
        None,
        description="TensorRT workspace limit in MiB (trt, or ort's TensorRT provider).",
        json_schema_extra={"flag": "--workspace"},
    )
