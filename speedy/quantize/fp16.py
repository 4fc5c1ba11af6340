"""FP16 weights and compute with float32 inputs and outputs.

Uses ONNX Runtime's bundled converter (`onnxruntime.transformers.float16`, the same code as
`onnxconverter-common`'s), so FP16 needs no extra dependency. Blocked op types and nodes stay
float32, with casts around them. The converter wants every initializer name unique across the
model's graphs; onnxslim copies a weight that two If branches share into each, so such copies
are renamed first.
"""

import itertools
from collections.abc import Collection

import onnx
from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

from speedy.onnx_io import node_graphs, subgraphs
from speedy.quantize.progress import quiet_ort


def to_fp16(model: onnx.ModelProto, block: Collection[str] = ()) -> onnx.ModelProto:
    """`model` in FP16, I/O kept float32; `block` names op types or nodes to keep float32."""
    op_types = {n.op_type for n in model.graph.node}
    blocked_ops = [*DEFAULT_OP_BLOCK_LIST, *(b for b in block if b in op_types)]
    blocked_nodes = [b for b in block if b not in op_types]
    unique_initializers(model)
    with quiet_ort():
        converted = convert_float_to_float16(
            model, keep_io_types=True, op_block_list=blocked_ops, node_block_list=blocked_nodes
        )
    skip_round_trips(converted.graph)
    return converted


def skip_round_trips(graph: onnx.GraphProto) -> None:
    """Between two float32 nodes the converter casts to FP16 and back (it gives every blocked
    node's output an FP16 copy): the second node then reads a value rounded to FP16, which
    overflows past 65,504 (a length of samples) and undoes keeping the node float32. Rewire each
    such consumer to the float32 value, and drop the casts nothing reads any more."""
    float32 = {v.name for v in [*graph.input, *graph.value_info, *graph.output]
               if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}  # fmt: skip
    float32 |= {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    producer = {out: node for node in graph.node for out in node.output}
    kept = {out.name for out in graph.output}
    direct: dict[str, str] = {}
    for node in graph.node:
        source = producer.get(node.input[0]) if node.op_type == "Cast" else None
        if (
            source is not None
            and source.op_type == "Cast"
            and _cast_to(node) == onnx.TensorProto.FLOAT
            and _cast_to(source) == onnx.TensorProto.FLOAT16
            and source.input[0] in float32
            and node.output[0] not in kept
        ):
            direct[node.output[0]] = source.input[0]
    for node in graph.node:
        node.input[:] = [direct.get(name, name) for name in node.input]
    while True:
        read = {name for node in graph.node for name in node.input} | kept
        unread = [n for n in graph.node if n.op_type == "Cast" and n.output[0] not in read]
        if not unread:
            return
        for node in unread:
            graph.node.remove(node)


def _cast_to(node: onnx.NodeProto) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None)


def unique_initializers(model: onnx.ModelProto) -> None:
    """Rename, in place, each subgraph initializer whose name an earlier graph's initializer
    already has (and its uses in that subgraph)."""
    seen = {t.name for t in model.graph.initializer}
    for graph in subgraphs(model.graph):
        for tensor in graph.initializer:
            if tensor.name in seen:
                new = next(n for i in itertools.count(1) if (n := f"{tensor.name}.{i}") not in seen)
                _rename_uses(graph, tensor.name, new)
                tensor.name = new
            seen.add(tensor.name)


def _rename_uses(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename the input `old` of `graph`'s nodes, and of nested graphs that do not define it."""
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        for inner in node_graphs(node):
            if old not in _defined(inner):
                _rename_uses(inner, old, new)


def _defined(graph: onnx.GraphProto) -> set[str]:
    """Names `graph` itself defines: its inputs, initializers and node outputs."""
    outputs = {name for node in graph.node for name in node.output}
    return outputs | {v.name for v in graph.input} | {t.name for t in graph.initializer}
