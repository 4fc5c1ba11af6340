"""Pure parts of quantization: clipping search, crops, groups, weight-only storage, budgets."""

import math

import numpy as np
import onnx
import pytest

from speedy.errors import SpeedyError
from speedy.quality import Budget
from speedy.quantize.clipping import expected_error, mse_range
from speedy.quantize.crops import window_starts
from speedy.quantize.graph import analyze, block_of, quantized_reason
from speedy.quantize.metrics import mean_quality, unmet
from speedy.quantize.mixed import Search, ranking
from speedy.quantize.report import collapse
from speedy.quantize.sensitivity import Sensitivity
from speedy.quantize.weight_only import quantize_weight, store_weights
from speedy.recipe import load_recipe
from speedy.stages.quantize import kept_groups
from speedy.tasks import task_for
from tests.conftest import TINY_RECIPE


def test_clipping_search_beats_min_max_on_a_heavy_tail() -> None:
    values = np.random.default_rng(0).laplace(0.0, 1.0, 200_000)  # long tails, like activations
    low, high = values.min(), values.max()
    counts, edges = np.histogram(values, bins=2048, range=(low, high))
    clip_low, clip_high = mse_range(counts, edges)
    assert low < clip_low < 0.0 < clip_high < high
    searched = expected_error(counts, edges, clip_low, clip_high)
    assert searched < 0.8 * expected_error(counts, edges, low, high)


def test_clipping_search_keeps_the_range_of_an_even_spread() -> None:
    counts, edges = np.histogram(np.linspace(0.0, 1.0, 10_000), bins=2048, range=(0.0, 1.0))
    low, high = mse_range(counts, edges)
    assert low == 0.0 and high == pytest.approx(1.0, abs=0.01)
    assert mse_range(np.zeros(8), np.linspace(-1, 2, 9)) == (-1.0, 2.0)  # no data: full range


def test_windows_cover_the_utterance_evenly() -> None:
    assert window_starts(100, 256) == [0]
    assert window_starts(256, 256) == [0]
    starts = window_starts(700, 256)
    assert starts == [0, 222, 444] and starts[-1] + 256 == 700


def test_block_names_follow_module_paths() -> None:
    assert block_of("resblocks.3.convs1.0.weight") == "resblocks.3"
    assert block_of("ups.0.weight") == "ups.0"
    assert block_of("conv_pre.weight") == "conv_pre"
    assert block_of("encoder.layers.11.attn.q.weight") == "encoder.layers.11"
    assert block_of("onnx::Conv_12") == "onnx::Conv_12"


def test_groups_and_macs_of_the_tiny_vocoder(tiny_build: dict) -> None:
    model = onnx.load(str(tiny_build["simplify"].file("model")))
    spec = tiny_build["ctx"].spec
    info = analyze(model, spec.sizes(), "block")
    assert info.groups[0] == "conv_pre" and info.groups[-1] == "conv_post"
    assert sum(info.share(g) for g in info.groups) == pytest.approx(1.0)
    # conv_pre: 80 mels -> 32 channels, kernel 7, over `opt` frames
    assert info.macs("conv_pre") == 80 * 32 * 7 * spec.sizes()["frames"]
    # residual adds join the resblock whose branch they close, not the upsampler
    adds = [n.name for n in model.graph.node if n.op_type == "Add"]
    assert all(any(n in info.members[g] for g in info.groups if "resblocks" in g) for n in adds)
    assert quantized_reason(model) is None
    assert len(analyze(model, spec.sizes(), "node").groups) == len(info.layers)


def test_keep_float_takes_groups_nodes_and_op_types(tiny_build: dict) -> None:
    model = onnx.load(str(tiny_build["simplify"].file("model")))
    sizes = tiny_build["ctx"].spec.sizes()
    nodes, blocks = analyze(model, sizes, "node"), analyze(model, sizes, "block")
    transposed = {layer.node for layer in nodes.layers if layer.op_type == "ConvTranspose"}
    assert transposed and kept_groups(nodes, ["ConvTranspose"]) == transposed
    upsamplers = {g for g in blocks.groups if g.startswith("ups.")}
    post_node = blocks.members["conv_post"][0]
    assert kept_groups(blocks, ["ConvTranspose", "conv_pre", post_node]) == upsamplers | {
        "conv_pre",
        "conv_post",
    }
    with pytest.raises(SpeedyError, match=r"Gemm.*op types of this graph's layers \(Conv, Conv"):
        kept_groups(blocks, ["Gemm"])


@pytest.mark.parametrize(
    ("dtype", "decode", "error", "shrink"),
    [("int8", "DequantizeLinear", 0.05, 2.0), ("fp16", "Cast", 0.002, 1.5)],
)
def test_weight_only_storage_keeps_outputs_and_shrinks_weights(
    tiny_build: dict, dtype: str, decode: str, error: float, shrink: float
) -> None:
    import onnxruntime as ort

    model = onnx.load(str(tiny_build["simplify"].file("model")))
    size = model.ByteSize()
    layers = {n.name for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")}
    feeds = {"mel": tiny_build["ctx"].examples[0][None, :, :100].astype(np.float32)}
    before = ort.InferenceSession(model.SerializeToString()).run(None, feeds)[0]
    assert store_weights(model, layers, dtype) == len(layers)
    assert decode in {n.op_type for n in model.graph.node}
    assert quantized_reason(model) is not None
    assert model.ByteSize() * shrink < size
    after = ort.InferenceSession(model.SerializeToString()).run(None, feeds)[0]
    assert np.abs(after - before).max() < error * np.abs(before).max()


def test_int8_weights_are_symmetric_per_channel() -> None:
    weight = np.random.default_rng(1).normal(size=(8, 4, 3)).astype(np.float32)
    values, scale = quantize_weight(weight, axis=0)
    assert values.dtype == np.int8 and np.abs(values).max() == 127
    assert np.abs(values * scale[:, None, None] - weight).max() <= scale.max() / 2 + 1e-7


def test_budgets_for_a_vocoder() -> None:
    task = task_for(load_recipe(str(TINY_RECIPE)).model_spec())
    assert task.budgets(None) == [Budget("pesq", ">=", 4.0)]
    assert task.budgets("mel<=0.2") == [Budget("mel", "<=", 0.2)]
    with pytest.raises(SpeedyError, match="unknown quality metric 'loudness'"):
        task.budgets("loudness>=3")


def test_unmet_collapse_and_nan_means() -> None:
    budgets = [Budget("pesq", ">=", 4.0), Budget("mel", "<=", 0.3)]
    assert unmet(budgets, {"pesq": 4.2, "mel": 0.1}) == []
    assert unmet(budgets, {"pesq": 1.9, "mel": 0.1}) == ["pesq 1.9 (needs pesq>=4)"]
    assert unmet(budgets, {"pesq": math.nan, "mel": 0.1})  # unmeasured never meets a budget
    assert collapse({"pesq": 1.9, "mel": 0.9}) == "pesq 1.90 is below 3"
    assert collapse({"mel": 0.6}) == "mel 0.60 is above 0.5"
    assert collapse({"pesq": 4.2, "mel": 0.1}) is None
    means = mean_quality([{"pesq": math.nan, "mel": 0.1}, {"pesq": 4.0, "mel": 0.3}])
    assert means == {"pesq": 4.0, "mel": pytest.approx(0.2)}


def test_search_keeps_the_fewest_macs_in_float(tiny_build: dict) -> None:
    """A synthetic quality model: the groups' harms add up and the budget allows 0.5 in all."""
    model = onnx.load(str(tiny_build["simplify"].file("model")))
    info = analyze(model, tiny_build["ctx"].spec.sizes(), "block")
    harm = {g: 0.0 for g in info.groups} | {"conv_post": 0.6, "conv_pre": 0.2, "resblocks.3": 0.9}

    def score(floats: list[str]) -> dict[str, float]:
        return {"mel": sum(h for g, h in harm.items() if g not in floats)}

    sensitivities = [Sensitivity(g, "", info.share(g), {"mel": harm[g]}) for g in info.groups]
    order = ranking(sensitivities, "mel", higher_is_better=False)
    assert order[:3] == ["conv_post", "conv_pre", "resblocks.3"]  # most harm per MAC first
    search = Search(info, [Budget("mel", "<=", 0.5)], score)
    chosen = search.run(order)
    # the shortest prefix that holds is all three; pruning then sends conv_pre back to INT8
    assert sorted(chosen) == ["conv_post", "resblocks.3"]
    holding = [sorted(e.float_groups) for e in search.tried if e.holds]
    assert sorted(chosen) in holding and len(search.tried) <= 8  # the chosen set was measured
    assert Search(info, [Budget("mel", "<=", -1.0)], score).run(order) is None


def padding_graph() -> onnx.ModelProto:
    """y = pad(x, right = ceil(len / 3) * 3 - len) * 2, the length computed in float from the
    Shape of x, as exporters write a causal conv's padding."""
    from onnx import TensorProto, helper, numpy_helper

    def const(name: str, value, dtype=np.float32) -> onnx.TensorProto:
        return numpy_helper.from_array(np.array(value, dtype), name)

    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], start=2, name="shape"),
        helper.make_node("Cast", ["shape"], ["length"], to=TensorProto.FLOAT, name="length"),
        helper.make_node("Div", ["length", "three"], ["frames"], name="frames"),
        helper.make_node("Ceil", ["frames"], ["whole"], name="whole"),
        helper.make_node("Mul", ["whole", "three"], ["ideal"], name="ideal"),
        helper.make_node("Sub", ["ideal", "length"], ["extra_f"], name="extra_f"),
        helper.make_node("Cast", ["extra_f"], ["extra"], to=TensorProto.INT64, name="extra"),
        helper.make_node("Concat", ["zeros", "extra"], ["pads"], axis=0, name="pads"),
        helper.make_node("Pad", ["x", "pads"], ["padded"], name="pad"),
        helper.make_node("Mul", ["padded", "two"], ["y"], name="scale"),
    ]
    graph = helper.make_graph(
        nodes,
        "padding",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, "n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, "m"])],
        [const("three", [3.0]), const("two", 2.0), const("zeros", [0, 0, 0, 0, 0], np.int64)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_size_arithmetic_stays_float32_in_fp16_and_int8() -> None:
    """The nodes computing a length are found, and FP16 keeps them float32 end to end: a length
    of 100,001 samples (past FP16's 65,504) pads by exactly 1."""
    import onnxruntime as ort

    from speedy.quantize.fp16 import to_fp16
    from speedy.quantize.tails import size_nodes

    model = padding_graph()
    sizes = size_nodes(model)
    assert sizes == {"shape", "length", "frames", "whole", "ideal", "extra_f", "extra", "pads"}
    half = to_fp16(model, sorted(sizes))
    x = np.random.default_rng(3).standard_normal((1, 1, 100_001)).astype(np.float32)
    session = ort.InferenceSession(half.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": x})
    assert y.shape == (1, 1, 100_002)
    np.testing.assert_allclose(y[..., :-1], 2 * x, rtol=1e-3)
    assert y[0, 0, -1] == 0
    reads = {name for node in half.graph.node if node.name in sizes for name in node.input}
    assert not any(name.endswith("_cast_to_fp32") for name in reads)  # no FP16 round trip
