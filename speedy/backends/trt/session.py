"""TensorRT sessions (tensorrt imported lazily): engine I/O through torch CUDA tensors."""

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from speedy.artifact import Artifact, GraphEntry
from speedy.backends.pytorch.session import torch_device
from speedy.backends.trt.section import TrtSection
from speedy.errors import SpeedyError
from speedy.runtime.base import Session
from speedy.shapes import select_profile
from speedy.specs import DimRange, Feeds, symbol_sizes


def import_tensorrt() -> ModuleType:
    """The `tensorrt` module, or a clear error naming the extra to install."""
    try:
        import tensorrt
    except ImportError:
        raise SpeedyError(
            "TensorRT is not installed",
            "pip install 'openspeedy[trt]' on a machine with an NVIDIA GPU and CUDA",
        ) from None
    return tensorrt


def check_engine_target(section: TrtSection, tensorrt_version: str, gpu_name: str) -> None:
    """Refuse an engine built for another TensorRT version or GPU (engines are not portable)."""
    if section.tensorrt != tensorrt_version:
        raise SpeedyError(
            f"engine was built with TensorRT {section.tensorrt}, this is {tensorrt_version}",
            "rebuild it here with `speedy compile --backend trt`",
        )
    if section.gpu != gpu_name:
        raise SpeedyError(
            f"engine was built for {section.gpu}, this GPU is {gpu_name}",
            "rebuild it on this GPU with `speedy compile --backend trt`",
        )


class TrtSession(Session):
    """A TensorRT execution context with shapes set per call."""

    def __init__(
        self,
        name: str,
        graph: GraphEntry,
        file: Path,
        dims: Mapping[str, DimRange],
        device: str = "cuda",
    ) -> None:
        super().__init__(name, graph, dims)
        if device != "cuda":
            raise SpeedyError("TensorRT engines run on CUDA only", "use --device cuda")
        trt = import_tensorrt()
        self.device = torch_device("cuda")
        assert isinstance(graph.runtime, TrtSection)
        check_engine_target(graph.runtime, trt.__version__, torch.cuda.get_device_name())
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        runtime.engine_host_code_allowed = False  # an engine is data: no embedded lean runtime
        self.engine = runtime.deserialize_cuda_engine(file.read_bytes())
        if self.engine is None:
            raise SpeedyError(
                f"TensorRT could not deserialize {file}",
                "the engine was built for another TensorRT version or GPU: rebuild it here",
            )
        self.context = self.engine.create_execution_context()
        self.profiles = graph.runtime.profiles
        if self.profiles and len(self.profiles) != self.engine.num_optimization_profiles:
            raise SpeedyError(
                f"the manifest lists {len(self.profiles)} profile(s), the engine has "
                f"{self.engine.num_optimization_profiles}",
                "rebuild the artifact with `speedy compile --backend trt`",
            )
        self.profile = 0

    def _run(self, feeds: Mapping[str, np.ndarray]) -> Feeds:
        stream = torch.cuda.current_stream(self.device)
        if self.profiles:  # the profile covering these sizes, nearest to its `opt`
            sizes = symbol_sizes(self.inputs, {name: v.shape for name, v in feeds.items()})
            index = select_profile(self.profiles, sizes)
            if index != self.profile:
                self.context.set_optimization_profile_async(index, stream.cuda_stream)
                self.profile = index
        keep_alive = []
        for spec in self.inputs:
            tensor = torch.from_numpy(feeds[spec.name]).to(self.device)
            keep_alive.append(tensor)
            self.context.set_input_shape(spec.name, tuple(tensor.shape))
            self.context.set_tensor_address(spec.name, tensor.data_ptr())
        outputs = {}
        for spec in self.outputs:
            shape = tuple(self.context.get_tensor_shape(spec.name))
            dtype = getattr(torch, spec.dtype)  # e.g. int64 lengths next to float32 audio
            outputs[spec.name] = torch.empty(shape, dtype=dtype, device=self.device)
            self.context.set_tensor_address(spec.name, outputs[spec.name].data_ptr())
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise SpeedyError("TensorRT execution failed", "run with --debug for TensorRT's log")
        stream.synchronize()
        return {name: tensor.cpu().numpy() for name, tensor in outputs.items()}


def open_graphs(
    artifact: Artifact, names: Sequence[str], device: str, threads: int | None
) -> dict[str, Session]:
    """A session per named engine of `artifact`."""
    dims = artifact.manifest.model.dims
    return {
        name: TrtSession(name, artifact.manifest.graphs[name], artifact.file(name), dims, device)
        for name in names
    }
