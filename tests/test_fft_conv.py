"""Block FFT convolutions: same outputs as ONNX Runtime's Conv, and only eligible convs changed."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from speedy.compile.fft_conv import FftConvOptions, dft_matrices, fft_convolutions

SMALL = FftConvOptions(min_channels=8, min_kernel=3, hop=16)


def conv_model(
    channels: tuple[int, int], kernel: int, dilation: int = 1, bias: bool = True, **attributes
) -> onnx.ModelProto:
    """x -> Conv -> y with seeded weights and "same" padding unless `pads` is given."""
    rng = np.random.default_rng(kernel * 10 + dilation)
    out_channels, in_channels = channels
    weight = rng.standard_normal((out_channels, in_channels, kernel)) / np.sqrt(
        in_channels * kernel
    )
    initializers = [numpy_helper.from_array(weight.astype(np.float32), "w")]
    inputs = ["x", "w"]
    if bias:
        initializers.append(
            numpy_helper.from_array(rng.standard_normal(out_channels).astype(np.float32), "b")
        )
        inputs.append("b")
    reach = dilation * (kernel - 1) // 2
    attributes = {"pads": [reach, reach], "dilations": [dilation]} | attributes
    node = helper.make_node("Conv", inputs, ["y"], name="conv", **attributes)
    graph = helper.make_graph(
        [node],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", in_channels, "time"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", out_channels, None])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_dft_matrices_invert_to_the_last_samples() -> None:
    forward, inverse = dft_matrices(32, 22)
    signal = np.random.default_rng(0).standard_normal(32)
    np.testing.assert_allclose(inverse @ (forward @ signal), signal[-22:], atol=1e-12)


@pytest.mark.parametrize(
    ("channels", "kernel", "dilation", "bias"),
    [
        ((16, 16), 7, 1, True),
        ((24, 16), 11, 3, False),
        ((16, 8), 5, 5, True),
        ((8, 8), 15, 1, True),
    ],
)
def test_same_outputs_as_conv(
    channels: tuple[int, int], kernel: int, dilation: int, bias: bool
) -> None:
    model = conv_model(channels, kernel, dilation, bias)
    rewritten, names = fft_convolutions(model, SMALL)
    assert names == ["conv"] and "Conv" not in {n.op_type for n in rewritten.graph.node}
    onnx.checker.check_model(rewritten)
    rng = np.random.default_rng(1)
    for batch, length in [(1, 1), (2, 21), (1, 22), (3, 257), (1, 3000)]:
        x = rng.standard_normal((batch, channels[1], length)).astype(np.float32)
        expected = run(model, x)
        np.testing.assert_allclose(run(rewritten, x), expected, atol=2e-5 * np.abs(expected).max())


@pytest.mark.parametrize(
    ("model", "why"),
    [
        (conv_model((16, 16), 7, strides=[2]), "strided"),
        (conv_model((16, 16), 7, group=2), "grouped"),
        (conv_model((16, 16), 7, pads=[6, 0]), "causal padding"),
        (conv_model((16, 4), 7), "too few input channels"),
        (conv_model((16, 16), 1), "kernel too short"),
        (conv_model((16, 16), 21), "kernel too long for the hop"),
    ],
)
def test_ineligible_convs_are_kept(model: onnx.ModelProto, why: str) -> None:
    rewritten, names = fft_convolutions(model, SMALL)
    assert names == [], why
    assert rewritten.graph == model.graph


def test_default_options_spare_narrow_convs() -> None:
    model = conv_model((64, 64), 11)
    assert fft_convolutions(model, FftConvOptions())[1] == []
    assert fft_convolutions(model, FftConvOptions(min_channels=64))[1] == ["conv"]
