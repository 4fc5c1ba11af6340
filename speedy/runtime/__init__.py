"""Load any stage's artifact behind one interface: `load(path).run(feeds) -> outputs`."""

from pathlib import Path

from speedy.artifact import Artifact
from speedy.runtime.base import Session, check_feeds

__all__ = ["Session", "check_feeds", "load"]


def load(path: str | Path, device: str = "cpu", threads: int | None = None) -> Session:
    """Open the artifact at `path` (its directory, or its model file) on `device`."""
    path = Path(path)
    artifact = Artifact.open(path if path.is_dir() else path.parent)
    kind = artifact.manifest.kind
    if kind == "onnx":
        from speedy.runtime.onnx_session import OnnxSession as backend
    elif kind == "torch":
        from speedy.runtime.torch_session import TorchSession as backend
    elif kind == "aoti":
        from speedy.runtime.aoti_session import AotiSession as backend
    else:
        from speedy.runtime.trt_session import TrtSession as backend
    return backend(artifact.manifest, artifact.model_file, device=device, threads=threads)
