"""OpenVINO sessions (openvino imported here, and by the build, only)."""

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

from speedy import cancel
from speedy.artifact import Artifact, GraphEntry
from speedy.backends.openvino.section import OpenVinoSection
from speedy.errors import GraphRunError, SpeedyError, import_extra
from speedy.runtime.base import Session
from speedy.specs import DimRange, Feeds


def import_openvino() -> ModuleType:
    """The `openvino` module, or a clear error naming the extra to install."""
    return import_extra("openvino", "openvino", "OpenVINO")


class OpenVinoSession(Session):
    """A graph compiled by OpenVINO's CPU plugin, with a pool of infer requests so that
    concurrent calls run side by side."""

    def __init__(
        self,
        name: str,
        graph: GraphEntry,
        files: tuple[Path, Path],
        dims: Mapping[str, DimRange],
        threads: int | None,
    ) -> None:
        super().__init__(name, graph, dims)
        ov = import_openvino()
        assert isinstance(graph.runtime, OpenVinoSection)
        config = {
            "PERFORMANCE_HINT": graph.runtime.hint.upper(),
            "INFERENCE_PRECISION_HINT": "f32",
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = str(threads)
        xml, weights = files
        try:
            core = ov.Core()
            self.compiled = core.compile_model(core.read_model(xml, weights), "CPU", config)
        except Exception as exc:
            raise SpeedyError(
                f"OpenVINO cannot load {xml}: {str(exc).splitlines()[0]}",
                "recompile it with `speedy compile --backend openvino` and this openvino",
            ) from exc
        self.ports = [self.compiled.output(spec.name) for spec in self.outputs]
        self.idle: list = []  # infer requests not in use
        self.running: set = set()
        self.lock = threading.Lock()

    def _run(self, feeds: Mapping[str, np.ndarray]) -> Feeds:
        with self.lock:
            request = self.idle.pop() if self.idle else self.compiled.create_infer_request()
            self.running.add(request)
        try:
            with cancel.stoppable(request.cancel):
                request.start_async(dict(feeds))
                request.wait()
            return {
                spec.name: np.array(request.get_tensor(port).data)  # a copy: the request is reused
                for spec, port in zip(self.outputs, self.ports, strict=True)
            }
        except cancel.Cancelled:
            raise
        except Exception as exc:
            raise GraphRunError(
                f"OpenVINO failed to run graph '{self.name}': {str(exc).splitlines()[0]}",
                "check the values fed to it",
            ) from exc
        finally:
            with self.lock:
                self.running.discard(request)
                self.idle.append(request)

    def stop(self) -> None:
        for request in list(self.running):
            request.cancel()


def open_graphs(
    artifact: Artifact, names: Sequence[str], device: str, threads: int | None
) -> dict[str, Session]:
    """A session per named OpenVINO IR graph of `artifact` (CPU only)."""
    if device != "cpu":
        raise SpeedyError("OpenVINO graphs run on the CPU here", "use --device cpu")
    dims = artifact.manifest.model.dims
    sessions: dict[str, Session] = {}
    for name in names:
        graph = artifact.manifest.graphs[name]
        files = (artifact.path / graph.files[0], artifact.path / graph.files[1])
        sessions[name] = OpenVinoSession(name, graph, files, dims, threads)
    return sessions
