"""TensorRT backend: a serialized engine built with TensorRT's own Python API (10.x and 11.x).

The network is strongly typed (required by TensorRT 11, opt-in on 10.x), so precision comes
from the ONNX graph: FP16 by converting it first, INT8 from its explicit Q/DQ nodes. One
optimization profile is added per derived profile; a timing cache file, when given, is read
before the build and written back after it.
"""

import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from speedy.backends.base import Compiled, CompileJob
from speedy.backends.pytorch.session import torch_device
from speedy.backends.trt.section import TrtOptions, TrtSection
from speedy.backends.trt.session import import_tensorrt
from speedy.compile.precision import to_fp16
from speedy.errors import SpeedyError
from speedy.onnx_io import load_onnx, save_onnx
from speedy.scratch import scratch
from speedy.shapes import Profile, profile_shapes
from speedy.specs import TensorSpec


def build_target(profiles: Sequence[Profile]) -> TrtSection:
    """The TensorRT version and GPU an engine built here is tied to, with its profiles."""
    trt = import_tensorrt()
    device = torch_device("cuda")
    major, minor = torch.cuda.get_device_capability(device)
    return TrtSection(
        tensorrt=trt.__version__,
        gpu=torch.cuda.get_device_name(device),
        compute_capability=f"{major}.{minor}",
        profiles=list(profiles),
    )


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _parse(trt, network, logger, onnx_file: Path):
    """Fill `network` from `onnx_file`; the returned parser owns the weights, keep it alive."""
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_file)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise SpeedyError(
            f"TensorRT cannot parse the ONNX model: {errors[0] if errors else 'no details'}",
            "run with --debug for TensorRT's log; check the opset and ops are supported",
        )
    return parser


def build_engine(
    onnx_file: Path,
    inputs: Sequence[TensorSpec],
    profiles: Sequence[Profile],
    fp16: bool,
    workspace_mb: int | None,
    timing_cache: Path | None,
) -> tuple[bytes, TrtSection, dict]:
    """Build a serialized engine for `onnx_file`; return it, its runtime section and the build's
    report."""
    target = build_target(profiles)
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    with scratch("trt") as tmp:
        source = onnx_file
        if fp16:
            source = save_onnx(to_fp16(load_onnx(onnx_file)), tmp / "model_fp16.onnx")[0]
        parser = _parse(trt, network, logger, source)
    config = builder.create_builder_config()
    if workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    for profile in profiles:
        optimization = builder.create_optimization_profile()
        for name, (low, opt, high) in profile_shapes(profile, inputs).items():
            optimization.set_shape(name, low, opt, high)
        config.add_optimization_profile(optimization)
    cached = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    config.set_timing_cache(config.create_timing_cache(cached), ignore_mismatch=False)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    del parser  # held the weights until the build
    if serialized is None:
        raise SpeedyError(
            "TensorRT could not build the engine",
            "run with --debug for TensorRT's log, or allow more memory with --workspace",
        )
    seconds = time.perf_counter() - start
    if timing_cache:
        _write_atomically(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    report = {
        "strongly_typed": True,
        "workspace_mb": workspace_mb,
        "timing_cache": str(timing_cache) if timing_cache else None,
        "timing_cache_reused": bool(cached),
        "build_seconds": round(seconds, 1),
    }
    return bytes(memoryview(serialized)), target, report


def compile_graph(job: CompileJob) -> Compiled:
    """One graph's engine, written to `job.target`."""
    assert isinstance(job.options, TrtOptions)
    o = job.options
    engine, section, report = build_engine(
        job.source, job.inputs, job.profiles, job.fp16, o.workspace_mb, o.timing_cache
    )
    job.target.write_bytes(engine)
    return Compiled([job.target.name], section, report)
