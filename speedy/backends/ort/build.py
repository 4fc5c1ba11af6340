"""Offline ONNX Runtime optimization and the session settings a compiled graph runs with.

Offline optimization runs on the CPU provider; above `basic` its result holds CPU-specific fused
ops, so for GPU providers a graph is optimized offline at `basic` only and the session applies the
requested level when it loads (where the GPU provider's own fusions apply).
"""

from collections.abc import Sequence
from pathlib import Path

from speedy.artifact import Precision
from speedy.backends.base import Compiled, CompileJob
from speedy.backends.ort.section import (
    PROVIDERS,
    Level,
    OrtOptions,
    OrtSection,
    OrtSettings,
    Provider,
    Weights,
)
from speedy.backends.ort.session import LEVELS, float_weights
from speedy.compile.fft_conv import FftConvOptions, fft_convolutions
from speedy.compile.precision import to_fp16
from speedy.console import console
from speedy.errors import SpeedyError
from speedy.onnx_io import EXTERNAL_DATA_SUFFIX, external_tensors, load_onnx, save_onnx
from speedy.scratch import scratch
from speedy.shapes import Profile, profile_shapes
from speedy.specs import TensorSpec


def optimize(source: Path, target: Path, level: Level, precision: Precision = "fp32") -> list[Path]:
    """Run ONNX Runtime's graph optimizations on `source` (CPU provider), saving to `target`
    (and, when the source has external data, its tensors of 1 KB or more beside it); returns the
    files written. A graph of int8-stored weights is saved with them made float32, as it runs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = LEVELS[level]
    float_weights(options, precision)
    options.optimized_model_filepath = str(target)
    external = bool(external_tensors(load_onnx(source, with_weights=False)))
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
    data = target.with_name(target.name + EXTERNAL_DATA_SUFFIX)
    return [target, data] if data.is_file() else [target]


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
    weights: Weights = "packed",
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
        weights=weights,
        providers=[*chosen, (PROVIDERS["cpu"], {})],
    )


def offline_level(level: Level, providers: Sequence[Provider]) -> Level:
    """The level to optimize at ahead of time: `basic` at most when a GPU provider will run it."""
    gpu = any(p != "cpu" for p in providers)
    return "basic" if gpu and level in ("extended", "all") else level


def compile_graph(job: CompileJob) -> Compiled:
    """ONNX optimized offline (FP16 first with --fp16; long convs as FFT convs with --fft-conv)
    and the session settings it runs with."""
    o, report = job.options, {}
    assert isinstance(o, OrtOptions)
    # with FFT convs, ORT folds their spectral weights when the session loads: folded
    # ahead of time, they would make the file about ten times larger
    level = "disable" if o.fft_conv else offline_level(o.ort_level, o.providers)
    source = job.source
    with scratch("compile") as tmp:
        if job.fp16:
            source = save_onnx(to_fp16(load_onnx(source)), tmp / "model.onnx")[0]
        if o.fft_conv:
            model, rewritten = fft_convolutions(load_onnx(source), FftConvOptions())
            source = save_onnx(model, tmp / "model.onnx")[0]
            report["fft_convs"] = rewritten
            console.print(f"  {len(rewritten)} convs as block FFT convolutions")
        files = optimize(source, job.target, level, job.precision)
    trt_options = tensorrt_options(job.profiles, job.inputs, job.int8, o.workspace_mb)
    settings = settings_for(
        o.ort_level, level, o.providers, o.ort_threads, o.ort_weights, trt_options
    )
    report["offline_level"] = level
    uses_trt = "tensorrt" in o.providers
    section = OrtSection(settings=settings, profiles=job.profiles if uses_trt else [])
    return Compiled([f.name for f in files], section, report)
