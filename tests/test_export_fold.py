"""Weights read through Transposes (an unrolled graph's shared layers) are stored transposed."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

from speedy.stages.export_fold import fold_weight_transposes


class ThreeSteps(torch.nn.Module):
    """One Linear applied three times, as the code predictor's steps apply its layers."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(512, 512, bias=False)  # past the exporter's folding size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(3):
            x = torch.tanh(self.linear(x))
        return x


def run(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def test_a_shared_linear_weight_is_stored_as_its_matmuls_read_it(tmp_path: Path) -> None:
    torch.manual_seed(3)
    x = torch.randn(2, 1, 512)  # [batch, seq, hidden]: MatMuls (a 2-D input makes Gemms)
    path = tmp_path / "steps.onnx"
    torch.onnx.export(ThreeSteps().eval(), (x,), str(path), dynamo=True, input_names=["x"])
    model = onnx.load(str(path))
    before = run(model, {"x": x.numpy()})
    weights = {t.name for t in model.graph.initializer}
    transposes = [n for n in model.graph.node if n.op_type == "Transpose" and n.input[0] in weights]
    assert transposes  # the exporter's own, left where a weight is read more than once

    assert fold_weight_transposes(model) == 1
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul"]
    assert len(matmuls) == 3 and all(n.input[1] in weights for n in matmuls)
    assert not [n for n in model.graph.node if n.op_type == "Transpose"]
    assert len(model.graph.initializer) == 1
    onnx.checker.check_model(model)
    np.testing.assert_array_equal(run(model, {"x": x.numpy()})[0], before[0])


def test_a_weight_read_otherwise_too_is_left_alone() -> None:
    weight = np.arange(12, dtype=np.float32).reshape(3, 4)
    graph = helper.make_graph(
        [
            helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]),
            helper.make_node("MatMul", ["x", "wt"], ["y"]),
            helper.make_node("Gather", ["w", "i"], ["row"]),
        ],
        "mixed",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("i", TensorProto.INT64, [1]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3]),
            helper.make_tensor_value_info("row", TensorProto.FLOAT, [1, 4]),
        ],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    original = model.SerializeToString()
    assert fold_weight_transposes(model) == 0
    assert model.SerializeToString() == original
