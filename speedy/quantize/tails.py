"""The part of a graph its task keeps in float by default: from given layers to the outputs.

A codec's encoder ends in a nearest-codebook search (`||x||^2 - 2xE^T + ||E||^2`, ArgMin, Gather,
the residual, again per codebook): an INT8 or FP16 distance turns a near tie into another code,
and a flipped code changes the audio more than any rounding. The task names the layers where that
part starts by their weights' name prefix (`quantizer.`); those layers and every node after them
stay float32, weights included, and leave the groups that calibration, the search and the table
work on.
"""

from collections.abc import Collection, Sequence

import onnx

from speedy.quantize.graph import GraphInfo


def tail_nodes(model: onnx.ModelProto, prefixes: Sequence[str]) -> set[str]:
    """Names of the nodes reading an initializer whose name starts with one of `prefixes`, and of
    every node downstream of them."""
    if not prefixes:
        return set()
    initializers = {t.name for t in model.graph.initializer}
    tail: set[str] = set()
    reached: set[str] = set()  # tensors the tail produces
    for node in model.graph.node:  # ONNX keeps nodes in topological order
        seeds = any(n in initializers and n.startswith(tuple(prefixes)) for n in node.input)
        if seeds or any(n in reached for n in node.input):
            tail.add(node.name)
            reached.update(node.output)
    return tail


def size_nodes(model: onnx.ModelProto) -> set[str]:
    """Names of the nodes that compute sizes: a Shape, or a node whose inputs are all constants
    or sizes, one at least a size (a length divided and rounded up, as padding arithmetic does in
    float). Quantizing them would round lengths."""
    graph = model.graph
    constants = {t.name for t in graph.initializer} | {""}
    constants |= {out for n in graph.node if n.op_type == "Constant" for out in n.output}
    sizes: set[str] = set()
    nodes: set[str] = set()
    for node in graph.node:
        derived = any(n in sizes for n in node.input)
        if node.op_type in ("Shape", "Size") or (
            derived and all(n in sizes or n in constants for n in node.input)
        ):
            nodes.add(node.name)
            sizes.update(node.output)
    return nodes


def without(info: GraphInfo, nodes: Collection[str]) -> GraphInfo:
    """`info` with `nodes` left out of its layers and groups (groups left without a layer
    disappear, the nodes that followed them into it too)."""
    gone = set(nodes)
    layers = [layer for layer in info.layers if layer.node not in gone]
    grouped = {layer.group for layer in layers}
    members = {
        group: [n for n in names if n not in gone]
        for group, names in info.members.items()
        if group in grouped
    }
    return GraphInfo(layers=layers, members=members)
