"""Weight-only storage: float compute, int8 or float16 weights in the file.

A layer kept in float for quality still need not store float32 weights: its weight becomes a
per-output-channel symmetric int8 initializer plus a DequantizeLinear (about 4x smaller), or a
float16 one plus a Cast (2x smaller, about 1,000 times finer than int8: for layers whose
every error shows, such as those deciding a voice's durations), feeding the float op.
"""

from collections.abc import Collection, Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

# Axis of the output channels in each op's weight.
CHANNEL_AXIS = {"Conv": 0, "ConvTranspose": 1}
EVERY_LAYER_AXIS = CHANNEL_AXIS | {"MatMul": 1}  # a MatMul's 2-D weight: [inputs, outputs]


def quantize_weight(weight: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-channel int8 values in [-127, 127] and their float32 scales."""
    reduce = tuple(i for i in range(weight.ndim) if i != axis)
    scale = np.maximum(np.abs(weight).max(axis=reduce), np.finfo(np.float32).tiny) / 127.0
    shape = [1] * weight.ndim
    shape[axis] = -1
    values = np.clip(np.round(weight / scale.reshape(shape)), -127, 127).astype(np.int8)
    return values, scale.astype(np.float32)


def _int8(weight: str, tensor: onnx.TensorProto, axis: int) -> list:
    """A weight as int8 values, scales and zero points, and the DequantizeLinear reading them."""
    values, scale = quantize_weight(numpy_helper.to_array(tensor), axis)
    names = [f"{weight}_int8", f"{weight}_int8_scale", f"{weight}_int8_zero_point"]
    return [
        numpy_helper.from_array(values, names[0]),
        numpy_helper.from_array(scale, names[1]),
        numpy_helper.from_array(np.zeros_like(values, shape=scale.shape), names[2]),
        helper.make_node(
            "DequantizeLinear", names, [f"{weight}_dequantized"], name=f"{weight}_dq", axis=axis
        ),
    ]


def _fp16(weight: str, tensor: onnx.TensorProto, axis: int) -> list:
    """A weight as float16 values and the Cast back to float32."""
    values = numpy_helper.to_array(tensor).astype(np.float16)
    return [
        numpy_helper.from_array(values, f"{weight}_fp16"),
        helper.make_node(
            "Cast", [f"{weight}_fp16"], [f"{weight}_dequantized"], name=f"{weight}_cast", to=1
        ),
    ]


ENCODINGS = {"int8": _int8, "fp16": _fp16}


def store_weights(
    model: onnx.ModelProto,
    nodes: Collection[str],
    dtype: str,
    axes: Mapping[str, int] = CHANNEL_AXIS,
) -> int:
    """Store the float32 weights of `nodes` (of the op types in `axes`: Conv/ConvTranspose by
    default) as `dtype` (int8 or fp16) that a node turns back into float32 before the layer, in
    place; returns how many layers changed. Weights shared with other nodes are left alone."""
    encode = ENCODINGS[dtype]
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
            and node.op_type in axes
            and tensor is not None
            and tensor.data_type == onnx.TensorProto.FLOAT
            and (node.op_type != "MatMul" or len(tensor.dims) == 2)
            and uses[weight] == 1
        ):
            *stored, decode = encode(weight, tensor, axes[node.op_type])
            model.graph.initializer.remove(tensor)
            model.graph.initializer.extend(stored)
            rebuilt.append(decode)
            node.input[1] = decode.output[0]
            changed += 1
        rebuilt.append(node)
    del model.graph.node[:]
    model.graph.node.extend(rebuilt)
    return changed
