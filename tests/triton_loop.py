"""The Python model of a repository `speedy deploy triton` wrote, loaded as Triton's Python
backend would, over the stand-in of `triton_python_backend_utils` in `triton_stub/`, and asked
one request at a time."""

import importlib.util
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

STUB = Path(__file__).parent / "triton_stub"


@contextmanager
def loop_model_of(repository: Path) -> Iterator[tuple[Any, Any]]:
    """The repository's initialized `TritonPythonModel` and the stand-in module."""
    sys.path.insert(0, str(STUB))
    import triton_python_backend_utils as stub

    stub.REPOSITORY = repository
    path = repository / "speedy" / "1" / "model.py"
    spec = importlib.util.spec_from_file_location("speedy_triton_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    model.initialize({"model_repository": str(repository / "speedy"), "model_version": "1"})
    try:
        yield model, stub
    finally:  # the next repository's model.py imports both afresh, over its own stand-in
        sys.path.remove(str(STUB))
        sys.modules.pop("triton_python_backend_utils")
        sys.modules.pop("speedy.deploy.triton_bls")


def ask(loop_model: tuple[Any, Any], fields: dict, upload: bytes | None = None) -> list:
    """The responses to one request: decoupled, so all through its sender, the last flagged
    final and no other."""
    model, stub = loop_model
    inputs = [stub.Tensor("request", np.array([json.dumps(fields).encode()], np.object_))]
    if upload is not None:
        inputs.append(stub.Tensor("upload", np.frombuffer(upload, np.uint8)))
    request = stub.ClientRequest(inputs)
    assert model.execute([request]) is None
    flags = [flag for _, flag in request.sender.sent]
    assert flags[-1] == stub.TRITONSERVER_RESPONSE_COMPLETE_FINAL and not any(flags[:-1])
    return [response for response, _ in request.sender.sent if response is not None]


def audio_of(responses: list) -> np.ndarray:
    """The samples of audio responses, end to end."""
    return np.concatenate([r.tensors[0].as_numpy() for r in responses])
