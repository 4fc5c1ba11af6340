"""ONNX Runtime sessions (CPU; CUDA and TensorRT providers where onnxruntime-gpu is installed)."""

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from speedy import cancel
from speedy.artifact import Artifact, GraphEntry
from speedy.audio.cache import default_cache_dir
from speedy.backends.ort import pool
from speedy.backends.ort.section import PROVIDERS, OrtSection, OrtSettings
from speedy.errors import GraphRunError, SpeedyError
from speedy.onnx_io import load_onnx
from speedy.runtime.base import Session
from speedy.shapes import select_profile
from speedy.specs import DimRange, Feeds, symbol_sizes

LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
GPU_FIX = (
    "pip install 'openspeedy[gpu]' (onnxruntime-gpu, built with TensorRT for the TensorRT "
    "provider) on a machine with an NVIDIA GPU"
)


def _available(provider: str) -> str:
    if provider not in ort.get_available_providers():
        raise SpeedyError(f"ONNX Runtime here has no {provider}", GPU_FIX)
    return provider


def providers_for(settings: OrtSettings | None, device: str) -> list[tuple[str, dict[str, str]]]:
    """The providers to use on `device`: on cuda the stored GPU ones (CUDA when none were
    stored), with CPU as fallback."""
    cpu = (PROVIDERS["cpu"], {})
    if device == "cpu":
        return [cpu]
    stored = settings.providers if settings else []
    chosen = [(n, o) for n, o in stored if n != PROVIDERS["cpu"]] or [(PROVIDERS["cuda"], {})]
    cache = str(default_cache_dir() / "ort-tensorrt")
    with_paths = [
        (_available(n), o | {"trt_engine_cache_path": cache, "trt_timing_cache_path": cache})
        if n == PROVIDERS["tensorrt"]
        else (_available(n), o)
        for n, o in chosen
    ]
    return [*with_paths, cpu]


def session_options(
    settings: OrtSettings | None, threads: int | None, spinning: bool = True
) -> ort.SessionOptions:
    """Session options from stored settings (ORT's defaults without); `threads` overrides the
    intra-op thread count and, without `spinning`, idle pool threads sleep at once, unless the
    process shares one pool (`pool.share`)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if settings is not None:
        options.graph_optimization_level = LEVELS[settings.graph_optimization_level]
        if settings.execution_mode == "parallel":
            options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    if pool.shared_threads():  # the process's pool runs every session
        options.use_per_session_threads = False
        return options
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.inter_op_num_threads = settings.inter_op_num_threads if settings else 1
    threads = threads or (settings.intra_op_num_threads if settings else 0)
    if threads:
        options.intra_op_num_threads = threads
    return options


def float_weights(options: ort.SessionOptions, precision: str) -> None:
    """For a graph of int8-stored weights (`int8-weights`), turn them into float32 as it loads
    (its DequantizeLinear nodes fold into constants), so it computes in float as stored: ONNX
    Runtime would otherwise fuse a dequantized MatMul weight into MatMulNBits, which rounds the
    activations to int8."""
    if precision == "int8-weights":
        options.add_session_config_entry("session.disable_quant_qdq", "1")


class MappedFiles:
    """Read-only mappings of an artifact's data files, one per file, made on first use."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.found: dict[str, np.memmap] = {}

    def __getitem__(self, name: str) -> np.memmap:
        if name not in self.found:
            self.found[name] = np.memmap(self.directory / name, dtype=np.uint8, mode="r")
        return self.found[name]


def read_in_place(options: ort.SessionOptions, graph: GraphEntry, files: MappedFiles) -> None:
    """Have the session read the weights of `graph`'s data files where `files` maps them,
    unpacked: every session given the same `files` reads one copy."""
    options.add_session_config_entry("session.disable_prepacking", "1")
    if data := graph.files[1:]:
        buffers = [files[name] for name in data]
        folder = Path(graph.file).parent  # the model names its data files relative to itself
        options.add_external_initializers_from_files_in_memory(
            [Path(name).relative_to(folder).as_posix() for name in data],
            buffers,
            [b.nbytes for b in buffers],
        )
        options.add_session_config_entry(
            "session.use_external_initializer_file_buffers_directly", "1"
        )


class OnnxSession(Session):
    """An ONNX Runtime inference session of one graph's file."""

    def __init__(
        self,
        name: str,
        graph: GraphEntry,
        file: Path,
        dims: Mapping[str, DimRange],
        device: str = "cpu",
        threads: int | None = None,
        files: MappedFiles | None = None,
        spinning: bool = True,
    ) -> None:
        super().__init__(name, graph, dims)
        section = graph.runtime if isinstance(graph.runtime, OrtSection) else None
        settings = section.settings if section else None
        providers = providers_for(settings, device)
        load_onnx(file, with_weights=False)  # clear errors for corrupt files, unsafe paths
        options = session_options(settings, threads, spinning)
        float_weights(options, graph.precision)
        self.files = files  # mapped data files the session reads in place: kept for its life
        if settings and settings.weights == "shared" and device == "cpu":
            # (by default its own mappings of its artifact's directory, which holds `graph.file`)
            self.files = files or MappedFiles(file.parents[len(Path(graph.file).parents) - 1])
            read_in_place(options, graph, self.files)
        try:
            self.session = ort.InferenceSession(str(file), options, providers=providers)
        except Exception as exc:
            raise SpeedyError(
                f"ONNX Runtime cannot load {file}: {str(exc).splitlines()[0]}",
                "re-create the artifact, or check the onnxruntime version supports its opset",
            ) from exc
        uses_trt = PROVIDERS["tensorrt"] in self.session.get_providers()
        self.profiles = section.profiles if section and uses_trt else []
        self.running: set[ort.RunOptions] = set()  # of the calls in progress

    def _run(self, feeds: Mapping[str, np.ndarray]) -> Feeds:
        if self.profiles:  # TensorRT provider: refuse sizes outside its explicit profiles
            shapes = {name: value.shape for name, value in feeds.items()}
            select_profile(self.profiles, symbol_sizes(self.inputs, shapes))
        names, options = [spec.name for spec in self.outputs], ort.RunOptions()
        self.running.add(options)
        try:
            with cancel.stoppable(lambda: setattr(options, "terminate", True)):
                outputs = self.session.run(names, dict(feeds), options)
            return dict(zip(names, outputs, strict=True))
        except cancel.Cancelled:
            raise
        except Exception as exc:  # onnxruntime's own error types: a failed kernel, a bad value
            raise GraphRunError(
                f"ONNX Runtime failed to run graph '{self.name}': {str(exc).splitlines()[0]}",
                "check the values fed to it",
            ) from exc
        finally:
            self.running.discard(options)

    def stop(self) -> None:
        for options in list(self.running):
            options.terminate = True


def open_graphs(
    artifact: Artifact, names: Sequence[str], device: str, threads: int | None
) -> dict[str, Session]:
    """A session per named ONNX graph of `artifact` (those set to share weights read one
    mapping of each data file). On CPU, several graphs' own pools do not spin: graphs of one
    artifact run in turns (prefill, decode, a predictor, a decoder step), and a pool spinning
    after its run takes cores from the next graph's (a 4-bit Qwen3-TTS frame on 2 cores: 138-157
    ms spinning, 97-107 ms not). A process's shared pool (`pool.share`) spins: its threads run
    every graph."""
    dims, files = artifact.manifest.model.dims, MappedFiles(artifact.path)
    spinning = device != "cpu" or len(names) == 1
    graphs = artifact.manifest.graphs
    return {
        name: OnnxSession(
            name, graphs[name], artifact.file(name), dims, device, threads, files, spinning
        )
        for name in names
    }
