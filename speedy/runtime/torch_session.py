"""PyTorch eager backend: rebuilds the network from the manifest and loads its state dict."""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch

from speedy.artifact import Manifest
from speedy.errors import SpeedyError
from speedy.families.base import read_state_dict
from speedy.runtime.base import Session
from speedy.torch_utils import strip_weight_norm


def torch_device(device: str) -> torch.device:
    """A torch device, with a clear error when CUDA is asked for but absent."""
    if device == "cuda" and not torch.cuda.is_available():
        raise SpeedyError(
            "CUDA is not available to PyTorch here", "use --device cpu, or a GPU machine"
        )
    if device not in ("cpu", "cuda"):
        raise SpeedyError(f"unknown device '{device}'", "use cpu or cuda")
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
    """Eager PyTorch inference under `torch.inference_mode` (IEEE FP32 on CUDA)."""

    def __init__(
        self, manifest: Manifest, model_file: Path, device: str = "cpu", threads: int | None = None
    ) -> None:
        super().__init__(manifest, model_file)
        self.device = torch_device(device)
        if threads:
            torch.set_num_threads(threads)
        self.module = manifest.model.build_module()
        strip_weight_norm(self.module)  # a factory's network may carry it; the weights do not
        self.module.load_state_dict(read_state_dict(model_file))
        self.module.to(self.device)

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = [torch.from_numpy(feeds[spec.name]).to(self.device) for spec in self.inputs]
        precision = ieee_fp32() if self.device.type == "cuda" else nullcontext()
        with torch.inference_mode(), precision:
            result = self.module(*args)
        results = result if isinstance(result, tuple | list) else (result,)
        return {
            spec.name: (value.float() if value.is_floating_point() else value).cpu().numpy()
            for spec, value in zip(self.outputs, results, strict=True)
        }
