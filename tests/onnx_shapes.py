"""Test support: data-dependent shapes in an ONNX graph, which TensorRT rejects or needs special
handling for.

TensorRT builds engines for shape ranges (optimization profiles), so every tensor shape must
follow from the input shapes. Two things break that: ops whose output size depends on values
(NonZero, the `repeat_interleave` of a naive length regulator; Unique, Compress, NMS), and shape
operands (a Range limit, a Reshape/Expand/Tile/ConstantOfShape shape, Slice bounds, Pad widths,
Resize sizes, a TopK k) computed from input *values*, e.g. `arange(durations.sum())`. Values
that come only from `Shape`/`Size` of tensors, constants and initializers are fine.
"""

import onnx

# Ops whose output size depends on values, and sequence ops (a list of data-dependent length,
# e.g. from `repeat_interleave`; TensorRT's ONNX parser has none of them).
VALUE_SHAPED_OPS = frozenset(
    {"NonZero", "Unique", "Compress", "NonMaxSuppression", "StringSplit"}
    | {"SplitToSequence", "ConcatFromSequence", "SequenceConstruct", "SequenceEmpty"}
    | {"SequenceAt", "SequenceInsert", "SequenceErase", "SequenceLength"}
)
# Op type -> positions of its inputs that give an output shape, size or trip count.
SHAPE_OPERANDS: dict[str, tuple[int, ...]] = {
    "Range": (0, 1, 2),
    "Reshape": (1,),
    "Expand": (1,),
    "Tile": (1,),
    "ConstantOfShape": (0,),
    "Slice": (1, 2, 3, 4),
    "Pad": (1,),
    "Resize": (2, 3),
    "Upsample": (1,),
    "TopK": (1,),
    "OneHot": (1,),
    "Split": (1,),
    "CenterCropPad": (1,),
    "Loop": (0, 1),
}
SHAPE_ONLY_OPS = frozenset({"Shape", "Size"})  # their outputs never depend on values


def _scan(graph: onnx.GraphProto, value_dependent: set[str], where: str) -> list[str]:
    """Problems in `graph`, given the names of tensors that depend on input values."""
    problems = []
    for node in graph.node:
        label = f"{node.op_type} '{node.name}'{where}"
        if node.op_type in VALUE_SHAPED_OPS:
            problems.append(f"{label}: output size depends on values")
        for position in SHAPE_OPERANDS.get(node.op_type, ()):
            if position < len(node.input) and node.input[position] in value_dependent:
                problems.append(
                    f"{label}: input {position} ({node.input[position]}) is computed from "
                    "input values"
                )
        for attribute in node.attribute:
            bodies = [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else []
            for body in [*bodies, *attribute.graphs]:
                # Conservative: a body's own inputs count as values (iteration state).
                inner = value_dependent | {i.name for i in body.input}
                problems += _scan(body, inner, f" (inside {node.op_type} '{node.name}')")
        if node.op_type not in SHAPE_ONLY_OPS and any(i in value_dependent for i in node.input):
            value_dependent.update(node.output)
    return problems


def data_dependent_shapes(model: onnx.ModelProto) -> list[str]:
    """One line per op whose output shape depends on input values (empty: TensorRT-safe)."""
    graph = model.graph
    inputs = {i.name for i in graph.input} - {t.name for t in graph.initializer}
    return _scan(graph, inputs, "")
