"""A stand-in for `triton_python_backend_utils`, the module Triton's Python backend gives a
model.py: BLS requests run the repository's ONNX graph models with ONNX Runtime, after checking
them against the model's config.pbtxt the way Triton does (input names, dtypes, ranks, fixed dims,
the batch within max_batch_size), and a request's response sender collects what it is sent."""

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
REPOSITORY: Path | None = None  # set by the test
DTYPES = {"TYPE_FP32": np.float32, "TYPE_FP16": np.float16, "TYPE_INT64": np.int64,
          "TYPE_INT32": np.int32, "TYPE_BOOL": np.bool_, "TYPE_UINT8": np.uint8,
          "TYPE_STRING": np.object_}  # fmt: skip
_sessions: dict[str, tuple[pb.ModelConfig, ort.InferenceSession]] = {}


class TritonError:
    def __init__(self, message: str) -> None:
        self._message = message

    def message(self) -> str:
        return self._message


class Tensor:
    def __init__(self, name: str, value: np.ndarray) -> None:
        self._name, self._value = name, np.asarray(value)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._value


class InferenceResponse:
    def __init__(self, output_tensors: list[Tensor] | None = None,
                 error: TritonError | None = None) -> None:  # fmt: skip
        self.tensors, self._error = output_tensors or [], error

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error

    def output_tensors(self) -> list[Tensor]:
        return self.tensors


def _named(tensors: list[Tensor], name: str) -> Tensor | None:
    return next((t for t in tensors if t.name() == name), None)


def get_output_tensor_by_name(response: InferenceResponse, name: str) -> Tensor | None:
    return _named(response.tensors, name)


def get_input_tensor_by_name(request: Any, name: str) -> Tensor | None:
    return _named(request.inputs, name)


def _model(name: str) -> tuple[pb.ModelConfig, ort.InferenceSession]:
    if name not in _sessions:
        assert REPOSITORY is not None
        directory = REPOSITORY / name
        config = text_format.Parse((directory / "config.pbtxt").read_text(), pb.ModelConfig())
        assert config.platform == "onnxruntime_onnx", f"{name}: only ONNX graphs run here"
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(directory / "1" / "model.onnx"), options)
        _sessions[name] = config, session
    return _sessions[name]


def _check(config: pb.ModelConfig, tensor: Tensor) -> None:
    declared = {i.name: i for i in config.input}
    assert tensor.name() in declared, f"{config.name} has no input {tensor.name()}"
    spec, value = declared[tensor.name()], tensor.as_numpy()
    assert value.dtype == DTYPES[pb.DataType.Name(spec.data_type)], (tensor.name(), value.dtype)
    shape = value.shape
    if config.max_batch_size:
        assert 1 <= shape[0] <= config.max_batch_size, (tensor.name(), shape)
        shape = shape[1:]
    assert len(shape) == len(spec.dims), (tensor.name(), value.shape, list(spec.dims))
    assert all(d in (-1, s) for d, s in zip(spec.dims, shape, strict=True)), (tensor.name(), shape)


class InferenceRequest:
    """A BLS request: `exec` runs the named graph model."""

    def __init__(self, model_name: str, requested_output_names: list[str],
                 inputs: list[Tensor]) -> None:  # fmt: skip
        self.model_name, self.outputs, self.inputs = model_name, requested_output_names, inputs

    def exec(self) -> InferenceResponse:
        config, session = _model(self.model_name)
        for tensor in self.inputs:
            _check(config, tensor)
        declared = {o.name for o in config.output}
        assert set(self.outputs) <= declared, (self.outputs, declared)
        values = session.run(self.outputs, {t.name(): t.as_numpy() for t in self.inputs})
        return InferenceResponse([Tensor(n, v) for n, v in zip(self.outputs, values, strict=True)])


def run_ensemble(name: str, inputs: list[Tensor]) -> dict[str, np.ndarray]:
    """What Triton's ensemble scheduler does with a request to ensemble `name` (not part of the
    Python backend's module): its inputs checked against its config, each step run on the
    ensemble tensors its input_map names, as soon as they exist, and its outputs returned."""
    assert REPOSITORY is not None
    config = text_format.Parse((REPOSITORY / name / "config.pbtxt").read_text(), pb.ModelConfig())
    assert config.platform == "ensemble" and (REPOSITORY / name / "1").is_dir()
    for tensor in inputs:
        _check(config, tensor)
    tensors = {t.name(): t.as_numpy() for t in inputs}
    waiting = list(config.ensemble_scheduling.step)
    while waiting:
        step = next(s for s in waiting if set(s.input_map.values()) <= tensors.keys())
        waiting.remove(step)
        feeds = [Tensor(key, tensors[value]) for key, value in step.input_map.items()]
        response = InferenceRequest(step.model_name, list(step.output_map), feeds).exec()
        tensors |= {step.output_map[t.name()]: t.as_numpy() for t in response.tensors}
    return {o.name: tensors[o.name] for o in config.output}


class ResponseSender:
    def __init__(self) -> None:
        self.sent: list[tuple[InferenceResponse | None, int]] = []

    def send(self, response: InferenceResponse | None = None, flags: int = 0) -> None:
        self.sent.append((response, flags))


class ClientRequest:
    """A request to the speedy model, as Triton hands it to `execute`."""

    def __init__(self, inputs: list[Tensor]) -> None:
        self.inputs, self.sender = inputs, ResponseSender()

    def get_response_sender(self) -> ResponseSender:
        return self.sender
