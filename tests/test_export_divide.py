"""RMS norms exported as `x * rsqrt(v)` become `x / sqrt(v)`, which ONNX Runtime fuses."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper

from speedy.stages.export_divide import divide_reciprocals


class RsqrtNorm(torch.nn.Module):
    """Qwen3's RMS norm, as upstream writes it, then a residual that reads its input too."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.rand(64) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
        return x + self.weight * normed


def optimized_ops(model: onnx.ModelProto, tmp_path: Path) -> list[str]:
    """The op types of `model` after ONNX Runtime's own graph optimizations."""
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_an_rsqrt_norm_becomes_one_fused_kernel(tmp_path: Path) -> None:
    torch.manual_seed(11)
    path = tmp_path / "norm.onnx"
    example = torch.randn(2, 5, 64)
    torch.onnx.export(RsqrtNorm().eval(), (example,), str(path), dynamo=True, input_names=["x"])
    model = onnx.load(str(path))
    assert "SimplifiedLayerNormalization" not in optimized_ops(model, tmp_path)
    x = np.random.default_rng(12).standard_normal((2, 5, 64)).astype(np.float32) * 4
    before = run(model, x)

    assert divide_reciprocals(model) == 1
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert "Reciprocal" not in ops and "Div" in ops
    assert "SimplifiedLayerNormalization" in optimized_ops(model, tmp_path)
    after = run(model, x)
    assert np.isfinite(after).all()
    np.testing.assert_allclose(after, before, rtol=2e-6, atol=2e-6)


def test_a_reciprocal_read_twice_or_answered_is_left_alone() -> None:
    graph = helper.make_graph(
        [
            helper.make_node("Reciprocal", ["x"], ["r"]),
            helper.make_node("Mul", ["x", "r"], ["y"]),
            helper.make_node("Reciprocal", ["x"], ["s"]),
            helper.make_node("Mul", ["y", "s"], ["z"]),
        ],
        "kept",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4]) for n in ("z", "r", "s")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    original = model.SerializeToString()
    assert divide_reciprocals(model) == 0
    assert model.SerializeToString() == original
