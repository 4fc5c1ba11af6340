"""Weight-only INT8 storage: float compute, int8 weights in the file.

A layer kept in float for quality still need not store float weights: its weight becomes a
per-output-channel symmetric int8 initializer plus a DequantizeLinear feeding the float op, so
activations stay float while the file shrinks by about 4x for that layer.
"""

from collections.abc import Collection

import numpy as np
import onnx
from onnx import helper, numpy_helper

# Axis of the output channels in each op's weight.
CHANNEL_AXIS = {"Conv": 0, "ConvTranspose": 1}


def quantize_weight(weight: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-channel int8 values in [-127, 127] and their float32 scales."""
    reduce = tuple(i for i in range(weight.ndim) if i != axis)
    scale = np.maximum(np.abs(weight).max(axis=reduce), np.finfo(np.float32).tiny) / 127.0
    shape = [1] * weight.ndim
    shape[axis] = -1
    values = np.clip(np.round(weight / scale.reshape(shape)), -127, 127).astype(np.int8)
    return values, scale.astype(np.float32)


def weight_only_int8(model: onnx.ModelProto, nodes: Collection[str]) -> int:
    """Store the float weights of `nodes` (Conv/ConvTranspose) as int8 + DequantizeLinear, in
    place; returns how many layers changed. Weights shared with other nodes are left alone."""
    initializers = {t.name: t for t in model.graph.initializer}
    uses: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    rebuilt, changed = [], 0
    for node in model.graph.node:
        weight = node.input[1] if len(node.input) > 1 else ""
        tensor = initializers.get(weight)
        if (
            node.name in nodes
            and node.op_type in CHANNEL_AXIS
            and tensor is not None
            and tensor.data_type == onnx.TensorProto.FLOAT
            and uses[weight] == 1
        ):
            axis = CHANNEL_AXIS[node.op_type]
            values, scale = quantize_weight(numpy_helper.to_array(tensor), axis)
            model.graph.initializer.remove(tensor)
            names = [f"{weight}_int8", f"{weight}_int8_scale", f"{weight}_int8_zero_point"]
            model.graph.initializer.extend(
                [
                    numpy_helper.from_array(values, names[0]),
                    numpy_helper.from_array(scale, names[1]),
                    numpy_helper.from_array(np.zeros_like(values, shape=scale.shape), names[2]),
                ]
            )
            rebuilt.append(
                helper.make_node(
                    "DequantizeLinear",
                    names,
                    [f"{weight}_dequantized"],
                    name=f"{weight}_DequantizeLinear",
                    axis=axis,
                )
            )
            node.input[1] = f"{weight}_dequantized"
            changed += 1
        rebuilt.append(node)
    del model.graph.node[:]
    model.graph.node.extend(rebuilt)
    return changed
