"""Eager PyTorch: rebuilds the family's network from the manifest and loads the state dict."""

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext

import numpy as np
import torch

from speedy.artifact import Artifact, GraphEntry
from speedy.devices import check_device, require_cuda
from speedy.runtime.base import Session
from speedy.specs import DimRange, Feeds


def torch_device(device: str) -> torch.device:
    """A torch device, with a clear error for an unknown one or CUDA without a GPU."""
    if check_device(device) == "cuda":
        require_cuda()
    return torch.device(device)


@contextmanager
def ieee_fp32() -> Iterator[None]:
    """FP32 convolutions and matrix products without TF32 (torch lets cuDNN convolutions use it
    by default), so that an FP32 artifact on CUDA keeps its parity with the CPU."""
    flags = (torch.backends.cudnn.conv, torch.backends.cuda.matmul)
    saved = [flag.fp32_precision for flag in flags]
    for flag in flags:
        flag.fp32_precision = "ieee"
    try:
        yield
    finally:
        for flag, value in zip(flags, saved, strict=True):
            flag.fp32_precision = value


class TorchSession(Session):
    """One graph's module under `torch.inference_mode` (IEEE FP32 on CUDA)."""

    def __init__(
        self,
        name: str,
        graph: GraphEntry,
        dims: Mapping[str, DimRange],
        module: torch.nn.Module,
        device: str = "cpu",
    ) -> None:
        """`module` runs the graph and is already on `device`."""
        super().__init__(name, graph, dims)
        self.device = torch_device(device)
        self.module = module

    def _run(self, feeds: Mapping[str, np.ndarray]) -> Feeds:
        args = [torch.from_numpy(feeds[spec.name]).to(self.device) for spec in self.inputs]
        precision = ieee_fp32() if self.device.type == "cuda" else nullcontext()
        with torch.inference_mode(), precision:
            result = self.module(*args)
        results = result if isinstance(result, tuple | list) else (result,)
        return {
            spec.name: (value.float() if value.is_floating_point() else value).cpu().numpy()
            for spec, value in zip(self.outputs, results, strict=True)
        }


def open_graphs(
    artifact: Artifact, names: Sequence[str], device: str, threads: int | None
) -> dict[str, Session]:
    """The network built once from the manifest with the artifact's weights; a session per
    named graph (each the family's module for that graph)."""
    from speedy.families import resolve
    from speedy.families.network import load_network

    if threads:
        torch.set_num_threads(threads)
    spec = artifact.manifest.model
    network = load_network(spec, artifact.file(names[0])).to(torch_device(device))
    family = resolve(spec)
    return {
        name: TorchSession(
            name,
            artifact.manifest.graphs[name],
            spec.dims,
            family.graph_module(network, name),
            device,
        )
        for name in names
    }
