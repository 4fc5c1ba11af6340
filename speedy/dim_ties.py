"""Which dynamic dims of a graph's inputs and outputs its ops force to be equal (a recurrent
state's batch and the audio's), so that an imported model names each once.

Two sources: ONNX Runtime's symbolic shape inference, which merges dims an op needs equal
(`auto_merge`), and the recurrent ops' own rule it does not apply: an RNN, GRU or LSTM's initial
state has the batch of its sequence input.
"""

import onnx

from speedy.quantize.progress import quiet_ort

RECURRENT = {"RNN", "GRU", "LSTM"}
INITIAL_STATES = (5, 6)  # initial_h, and LSTM's initial_c


def dim_name(value: onnx.ValueInfoProto, axis: int, dim: onnx.TensorShapeProto.Dimension) -> str:
    """A dynamic dim's name: its own, else `<tensor>_d<axis>`."""
    return dim.dim_param or f"{value.name}_d{axis}"


def tied_dims(model: onnx.ModelProto) -> dict[str, str]:
    """Each dynamic I/O dim the graph forces equal to another, mapped to the name of the one the
    inputs name first; none where inference cannot follow the graph."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    named = onnx.ModelProto()
    named.CopyFrom(model)
    values = [*named.graph.input, *named.graph.output]
    for value in values:
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if not dim.HasField("dim_value"):
                dim.dim_param = dim_name(value, axis, dim)
    try:
        with quiet_ort():
            inferred = SymbolicShapeInference.infer_shapes(named, auto_merge=True)
    except Exception:  # an op it does not know
        return {}
    groups = _Groups()
    shapes = {v.name: v.type.tensor_type.shape.dim for v in values}
    for value in [*inferred.graph.input, *inferred.graph.output]:
        for old, new in zip(shapes[value.name], value.type.tensor_type.shape.dim, strict=False):
            if old.dim_param and new.dim_param:
                groups.join(old.dim_param, new.dim_param)
    for first, second in _recurrent_batches(inferred):
        groups.join(first, second)
    order = [d.dim_param for v in named.graph.input for d in shapes[v.name] if d.dim_param]
    return groups.named_after(order)


def _recurrent_batches(model: onnx.ModelProto) -> list[tuple[str, str]]:
    """(sequence batch, initial state batch) of every recurrent node, where both are named."""
    graph = model.graph
    shapes = {
        v.name: v.type.tensor_type.shape.dim
        for v in [*graph.input, *graph.value_info, *graph.output]
    }
    pairs = []
    for node in graph.node:
        if node.op_type not in RECURRENT:
            continue
        axis = 0 if next((a.i for a in node.attribute if a.name == "layout"), 0) else 1
        sequence = shapes.get(node.input[0], [])
        for index in INITIAL_STATES:
            state = shapes.get(node.input[index], []) if len(node.input) > index else []
            if len(sequence) > axis and len(state) > axis:  # batch: the same axis of both
                pairs.append((sequence[axis].dim_param, state[axis].dim_param))
    return [(a, b) for a, b in pairs if a and b]


class _Groups:
    """Dim names joined into groups of equal dims (union-find)."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, name: str) -> str:
        while self.parent.setdefault(name, name) != name:
            name = self.parent[name]
        return name

    def join(self, first: str, second: str) -> None:
        self.parent[self.find(first)] = self.find(second)

    def named_after(self, order: list[str]) -> dict[str, str]:
        """Each name in a group with a name from `order`, mapped to the first such name."""
        first: dict[str, str] = {}
        for name in order:
            first.setdefault(self.find(name), name)
        return {
            name: first[root]
            for name in self.parent
            if (root := self.find(name)) in first and first[root] != name
        }
