"""ONNX Runtime backend: an offline-optimized model plus the session settings it should run with.

The settings travel in the manifest (`reports.ort_session`) and the runtime applies them. Offline
optimization runs on the CPU provider; above `basic` its result holds CPU-specific fused ops, so
for GPU providers the model is optimized offline at `basic` only and the session applies the
requested level when it loads (where the GPU provider's own fusions apply).
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import onnxruntime as ort
from pydantic import BaseModel, ConfigDict

from speedy.audio.cache import default_cache_dir
from speedy.compile.profiles import Profile, profile_shapes
from speedy.errors import SpeedyError
from speedy.onnx_io import EXTERNAL_DATA_SUFFIX
from speedy.specs import TensorSpec

Level = Literal["disable", "basic", "extended", "all"]
Provider = Literal["cpu", "cuda", "tensorrt"]
LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
SESSION_REPORT = "ort_session"


class OrtSettings(BaseModel):
    """How a compiled ONNX Runtime artifact is meant to be run."""

    model_config = ConfigDict(extra="forbid")

    graph_optimization_level: Level
    intra_op_num_threads: int = 0  # 0: ONNX Runtime's default (one per physical core)
    inter_op_num_threads: int = 1
    execution_mode: Literal["sequential", "parallel"] = "sequential"
    providers: list[tuple[str, dict[str, str]]]

    def session_options(self, threads: int | None = None) -> ort.SessionOptions:
        """Session options from these settings; `threads` overrides the intra-op thread count."""
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = LEVELS[self.graph_optimization_level]
        options.intra_op_num_threads = threads or self.intra_op_num_threads
        options.inter_op_num_threads = self.inter_op_num_threads
        options.execution_mode = (
            ort.ExecutionMode.ORT_PARALLEL
            if self.execution_mode == "parallel"
            else ort.ExecutionMode.ORT_SEQUENTIAL
        )
        return options

    def providers_for(self, device: str) -> list[tuple[str, dict[str, str]]]:
        """The providers to use on `device`: the stored GPU ones on cuda, with CPU as fallback."""
        if device == "cpu":
            return [(PROVIDERS["cpu"], {})]
        if device != "cuda":
            raise SpeedyError(f"unknown device '{device}'", "use cpu or cuda")
        chosen = [(n, o) for n, o in self.providers if n != PROVIDERS["cpu"]]
        chosen = chosen or [(PROVIDERS["cuda"], {})]
        for name, _ in chosen:
            if name not in ort.get_available_providers():
                raise SpeedyError(
                    f"ONNX Runtime here has no {name}",
                    "pip install 'openspeedy[gpu]' (onnxruntime-gpu, built with TensorRT for "
                    "the TensorRT provider) on a machine with an NVIDIA GPU",
                )
        cache = str(default_cache_dir() / "ort-tensorrt")
        with_paths = [
            (n, o | {"trt_engine_cache_path": cache, "trt_timing_cache_path": cache})
            if n == PROVIDERS["tensorrt"]
            else (n, o)
            for n, o in chosen
        ]
        return [*with_paths, (PROVIDERS["cpu"], {})]


def tensorrt_options(
    profiles: Sequence[Profile], inputs: Sequence[TensorSpec], int8: bool, workspace_mb: int | None
) -> dict[str, str]:
    """TensorRT provider options with explicit profiles (an input repeated = one more profile)."""
    shapes = [profile_shapes(profile, inputs) for profile in profiles]

    def joined(corner: int) -> str:
        return ",".join(
            f"{name}:{'x'.join(map(str, corners[corner]))}"
            for by_input in shapes
            for name, corners in by_input.items()
        )

    options = {
        "trt_profile_min_shapes": joined(0),
        "trt_profile_opt_shapes": joined(1),
        "trt_profile_max_shapes": joined(2),
        "trt_engine_cache_enable": "True",
        "trt_timing_cache_enable": "True",
    }
    if int8:
        options["trt_int8_enable"] = "True"
    if workspace_mb:
        options["trt_max_workspace_size"] = str(workspace_mb << 20)
    return options


def settings_for(
    level: Level,
    offline: Level,
    providers: Sequence[Provider],
    threads: int,
    trt_options: dict[str, str] | None = None,
) -> OrtSettings:
    """Session settings for the given providers (CPU always last, as the fallback).

    CPU only, with the model optimized offline at `level`: the session skips the passes.
    With GPU providers, or a model optimized offline at another `offline` level (see
    `offline_level`): the session applies `level` itself.
    """
    gpu = [p for p in dict.fromkeys(providers) if p != "cpu"]
    chosen = [(PROVIDERS[p], dict(trt_options or {}) if p == "tensorrt" else {}) for p in gpu]
    return OrtSettings(
        graph_optimization_level=level if gpu or offline != level else "disable",
        intra_op_num_threads=threads,
        providers=[*chosen, (PROVIDERS["cpu"], {})],
    )


def offline_level(level: Level, providers: Sequence[Provider]) -> Level:
    """The level to optimize at ahead of time: `basic` at most when a GPU provider will run it."""
    gpu = any(p != "cpu" for p in providers)
    return "basic" if gpu and level in ("extended", "all") else level


def optimize(source: Path, target: Path, level: Level) -> list[Path]:
    """Run ONNX Runtime's graph optimizations on `source` (CPU provider), saving to `target`."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = LEVELS[level]
    options.optimized_model_filepath = str(target)
    external = source.with_name(source.name + EXTERNAL_DATA_SUFFIX).is_file()
    if external:
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_file_name",
            target.name + EXTERNAL_DATA_SUFFIX,
        )
    try:
        ort.InferenceSession(str(source), options, providers=[PROVIDERS["cpu"]])
    except Exception as exc:
        raise SpeedyError(
            f"ONNX Runtime cannot optimize {source}: {str(exc).splitlines()[0]}",
            "check the model loads with `speedy infer`, or try --ort-level basic",
        ) from exc
    return [target, target.with_name(target.name + EXTERNAL_DATA_SUFFIX)] if external else [target]
