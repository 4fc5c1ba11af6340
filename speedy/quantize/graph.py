"""What a float ONNX graph offers to quantize: weighted layers, their groups and their MACs.

A group is the unit the sensitivity analysis and the mixed-precision search work on: one layer
(`node` granularity) or one module block (`block`: the weight's module path up to its first
list index, e.g. `resblocks.3.convs1.0.weight` -> `resblocks.3`, `conv_pre.weight` ->
`conv_pre`). Ops without weights (activations, residual adds) join the group of their latest
grouped producer, so a residual add goes with the block whose branch it closes.
"""

import copy
import tempfile
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from speedy.onnx_io import save_onnx, subgraphs
from speedy.quantize.ranges import outputs_session
from speedy.specs import Feeds
from speedy.stages.options import Granularity

WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
FIXED = "dft_"  # weights `<module>.dft_*` are exact transforms (the STFT/ISTFT rewrites' bases)
QUANTIZED_OPS = frozenset(
    {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "ConvInteger"}
    | {"MatMulInteger", "QLinearConv", "QLinearMatMul", "QLinearAdd", "MatMulNBits"}
)


@dataclass
class Layer:
    """A weighted node: its weight initializer, group and multiply-accumulates per run."""

    node: str
    op_type: str
    weight: str
    group: str
    macs: int


@dataclass
class GraphInfo:
    layers: list[Layer]
    members: dict[str, list[str]] = field(default_factory=dict)  # group -> all its node names

    @property
    def groups(self) -> list[str]:
        return list(self.members)

    def macs(self, group: str) -> int:
        return sum(layer.macs for layer in self.layers if layer.group == group)

    def share(self, group: str) -> float:
        total = sum(layer.macs for layer in self.layers)
        return self.macs(group) / total if total else 0.0

    def op_types(self, group: str) -> str:
        """E.g. `Conv x6` for the group's weighted layers."""
        counts = Counter(layer.op_type for layer in self.layers if layer.group == group)
        return ", ".join(f"{op} x{n}" if n > 1 else op for op, n in counts.items())


def block_of(weight: str) -> str:
    """The module block a parameter belongs to (up to the first numeric path component)."""
    parts = weight.split(".")
    for index, part in enumerate(parts[:-1]):
        if part.isdigit():
            return ".".join(parts[: index + 1])
    return ".".join(parts[:-1]) or weight


def _module_path(node: onnx.NodeProto, weight: str) -> str:
    """The weight's dotted module path, from the node's name (`/flow/flows.0/enc/Conv`) where the
    exporter gave the weight none (`onnx::Conv_8171`)."""
    if "." in weight or "/" not in node.name:
        return weight
    return ".".join([*node.name.strip("/").split("/")[:-1], "weight"])


def quantized_reason(model: onnx.ModelProto) -> str | None:
    """Why `model` is already quantized or reduced precision (None when it is plain float32)."""
    ops = sorted({n.op_type for n in model.graph.node} & QUANTIZED_OPS)
    if ops:
        return f"it holds {', '.join(ops)} nodes"
    half = {onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
    if any(t.data_type in half for t in model.graph.initializer):
        return "its weights are 16-bit floats"
    return None


def fixed_layers(model: onnx.ModelProto) -> set[str]:
    """The weighted nodes whose weight is a fixed transform (named `FIXED...`): kept float32,
    weights included, since rounding a DFT basis adds error to every frame."""
    initializers = {t.name for t in model.graph.initializer}
    return {
        node.name
        for node in model.graph.node
        if (weight := _weight(node, initializers)) and weight.rpartition(".")[2].startswith(FIXED)
    }


def unquantizable(model: onnx.ModelProto, info: GraphInfo, kept: Collection[str]) -> str | None:
    """Why quantizing `model` would change none of its compute nodes (every layer of `info` in
    the `kept` groups, or none at the top level); None when some layer can be quantized."""
    if any(layer.group not in kept for layer in info.layers):
        return None
    if info.layers:
        return "--keep-float keeps every weighted layer float"
    nested = sum(n.op_type in WEIGHTED_OPS for graph in subgraphs(model.graph) for n in graph.node)
    if nested:
        return (
            f"its {nested} weighted layer(s) sit inside If/Loop/Scan branches, which quantization "
            "does not reach"
        )
    return f"it has no {', '.join(sorted(WEIGHTED_OPS))} with a constant weight"


def _weight(node: onnx.NodeProto, initializers: set[str]) -> str | None:
    if node.op_type not in WEIGHTED_OPS or len(node.input) < 2:
        return None
    return node.input[1] if node.input[1] in initializers else None


def _shapes(
    model: onnx.ModelProto, sizes: dict[str, int], feeds: Feeds | None, wanted: set[str]
) -> dict[str, tuple[int, ...]]:
    """Shapes of every tensor with the symbolic input dims set to `sizes`: inferred statically,
    and the `wanted` ones inference cannot size (lengths that follow the data, such as a
    duration model's frames) measured by running `feeds`."""
    fixed = copy.deepcopy(model)
    for value in fixed.graph.input:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in sizes:
                dim.dim_value = sizes[dim.dim_param]
    inferred = onnx.shape_inference.infer_shapes(fixed)
    shapes = {}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(d.dim_value for d in dims)
    if unknown := sorted(wanted - shapes.keys()) if feeds is not None else []:
        with tempfile.TemporaryDirectory() as tmp:
            (path, *_) = save_onnx(model, Path(tmp, "model.onnx"))
            session = outputs_session(path, unknown, Path(tmp))
            found = session.run(unknown, dict(feeds))
        shapes |= {name: value.shape for name, value in zip(unknown, found, strict=True)}
    return shapes


def _macs(node: onnx.NodeProto, weight: tuple[int, ...], shapes: dict) -> int:
    """Multiply-accumulates of one run; the weight count when shapes are unknown."""
    per_output = int(np.prod(weight[1:])) if node.op_type in ("Conv", "ConvTranspose") else 0
    if node.op_type == "Conv" and node.output[0] in shapes:
        return int(np.prod(shapes[node.output[0]])) * per_output
    if node.op_type == "ConvTranspose" and node.input[0] in shapes:
        return int(np.prod(shapes[node.input[0]])) * per_output
    if node.op_type in ("MatMul", "Gemm") and node.output[0] in shapes:
        transposed = any(a.name == "transB" and a.i for a in node.attribute)
        inner = weight[-1] if transposed else weight[0]
        return int(np.prod(shapes[node.output[0]])) * inner
    return int(np.prod(weight))


def analyze(
    model: onnx.ModelProto,
    sizes: dict[str, int],
    granularity: Granularity,
    feeds: Feeds | None = None,
) -> GraphInfo:
    """The weighted layers of `model` (MACs at `sizes`, or of `feeds` where the shapes follow
    the data) and the nodes of each group."""
    initializers = {t.name: tuple(t.dims) for t in model.graph.initializer}
    weighted = [n for n in model.graph.node if _weight(n, set(initializers))]
    shapes = _shapes(
        model, sizes, feeds, {n.output[0] for n in weighted} | {n.input[0] for n in weighted}
    )
    info = GraphInfo(layers=[])
    produced: dict[str, tuple[int, str]] = {}  # tensor -> (producer's position, its group)
    for position, node in enumerate(model.graph.node):  # ONNX keeps nodes in topological order
        weight = _weight(node, set(initializers))
        if weight is not None:
            group = node.name if granularity == "node" else block_of(_module_path(node, weight))
            macs = _macs(node, initializers[weight], shapes)
            info.layers.append(Layer(node.name, node.op_type, weight, group, macs))
        else:
            producers = [produced[i] for i in node.input if i in produced]
            group = max(producers)[1] if producers else None
        if group is None:
            continue
        info.members.setdefault(group, []).append(node.name)
        produced.update({output: (position, group) for output in node.output})
    return info
