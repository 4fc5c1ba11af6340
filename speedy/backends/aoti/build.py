"""AOTInductor packages: `torch.export` with the model's dynamic dims, compiled into a `.pt2`."""

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from speedy.backends.aoti.section import AotiSection
from speedy.backends.aoti.session import torch_release
from speedy.backends.base import Compiled, CompileJob
from speedy.errors import SpeedyError
from speedy.machine import cpu_model
from speedy.specs import DimRange, Feeds, TensorSpec, base

# Freezing folds the weights into the graph as constants (prepacked for oneDNN on CPU). On the
# real HiFi-GAN V1 (2-core CPU, one interleaved run) the package compiled in 34 s instead of
# 128 s and ran 14% faster than without it.
INDUCTOR_CONFIGS = {"freezing": True}


class HalfPrecision(torch.nn.Module):
    """Runs the wrapped module in FP16 behind float32 inputs and outputs (as the manifest says)."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module.half()

    def forward(self, *args: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        result = self.module(*(a.half() if a.is_floating_point() else a for a in args))
        if isinstance(result, tuple | list):
            return tuple(r.float() if r.is_floating_point() else r for r in result)
        return result.float()


def trace_sizes(dims: Mapping[str, DimRange]) -> dict[str, int]:
    """Typical sizes to trace at, at least 2 where the range allows (torch specializes 0 and 1)."""
    return {name: max(r.opt, min(2, r.max)) for name, r in dims.items()}


def dynamic_shapes(
    module: torch.nn.Module, inputs: Sequence[TensorSpec], dims: Mapping[str, DimRange]
) -> dict | tuple:
    """Each input's dynamic axes as `torch.export.Dim`s shared between inputs (a dim whose
    range is one size is static), laid out as `module.forward` takes its inputs."""
    from speedy.stages.export import by_signature, export_dim, export_dims

    found = export_dims({name: r for name, r in dims.items() if r.max > r.min})
    shapes = {
        s.name: {
            axis: export_dim(d, found)
            for axis, d in enumerate(s.shape)
            if isinstance(d, str) and base(d) in found
        }
        for s in inputs
    }
    return by_signature(module, shapes)


def compile_package(
    module: torch.nn.Module,
    inputs: Sequence[TensorSpec],
    dims: Mapping[str, DimRange],
    feeds: Feeds,
    path: Path,
    device: str,
    fp16: bool,
) -> AotiSection:
    """Export `module` (traced on `feeds`) with the model's dims and compile it into an
    AOTInductor package at `path`; returns the runtime section the manifest records."""
    args = tuple(torch.from_numpy(feeds[s.name]).to(device) for s in inputs)
    module = (HalfPrecision(module) if fp16 else module).to(device).eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # inductor's deprecation chatter; --debug keeps errors
            program = torch.export.export(  # sizes it cannot prove for every dim: checked at run
                module,
                args,
                dynamic_shapes=dynamic_shapes(module, inputs, dims),
                prefer_deferred_runtime_asserts_over_guards=True,
            )
            torch._inductor.aoti_compile_and_package(
                program, package_path=str(path), inductor_configs=INDUCTOR_CONFIGS
            )
    except Exception as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), repr(exc))
        raise SpeedyError(
            f"AOTInductor could not compile the model: {first}",
            "run with --debug for the full report; a C++ compiler (g++) must be installed",
        ) from exc
    return AotiSection(device=device, torch=torch_release(), host_cpu=cpu_model())


def compile_graph(job: CompileJob) -> Compiled:
    """The family's module of `job.graph`, with the parent's weights (loaded once per compile),
    as an AOTInductor package."""
    from speedy.families import resolve
    from speedy.families.network import load_network

    spec, family = job.spec, resolve(job.spec)
    if "network" not in job.memo:
        job.memo["network"] = load_network(spec, job.source)
    feeds = family.dummy_feeds(job.graph, trace_sizes(spec.dims))
    module = family.graph_module(job.memo["network"], job.graph)
    section = compile_package(
        module, job.inputs, spec.dims, feeds, job.target, job.device, job.fp16
    )
    return Compiled([job.target.name], section, {})
