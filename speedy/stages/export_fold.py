"""Weights stored the way their MatMuls read them: the dynamo exporter turns a Linear into a
MatMul of a transposed weight and folds that transpose only where the weight is read once; a graph
that runs the same layers several times (the code predictor's unrolled steps) keeps a Transpose per
read. Quantizers see no constant weight there, and ONNX Runtime folds a copy per read."""

from collections import defaultdict

import onnx
from onnx import numpy_helper


def fold_weight_transposes(model: onnx.ModelProto) -> int:
    """Store transposed every weight read only through Transposes of one permutation, those
    Transposes removed; how many weights were folded."""
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    readers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in {*node.input} & weights.keys():
            readers[name].append(node)
    ends = {value.name for value in graph.output}
    renamed: dict[str, str] = {}
    for name, nodes in readers.items():
        perms = {tuple(a.ints) for node in nodes for a in node.attribute if a.name == "perm"}
        if len(perms) != 1 or any(n.op_type != "Transpose" or n.output[0] in ends for n in nodes):
            continue
        array = numpy_helper.to_array(weights[name]).transpose(perms.pop())
        weights[name].CopyFrom(numpy_helper.from_array(array, name))
        renamed |= {node.output[0]: name for node in nodes}
    kept = [n for n in graph.node if n.op_type != "Transpose" or n.output[0] not in renamed]
    for node in kept:
        node.input[:] = [renamed.get(name, name) for name in node.input]
    del graph.node[:]
    graph.node.extend(kept)
    stale = [v for v in graph.value_info if v.name in renamed]
    for value in stale:
        graph.value_info.remove(value)
    return len(set(renamed.values()))
