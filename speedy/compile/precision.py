"""Precision in the graph itself: FP16 conversion and the explicit Q/DQ check for INT8.

TensorRT 11 builds strongly typed networks only (no FP16/INT8 builder flags, no implicit
calibration), so reduced precision must already be in the ONNX graph: FP16 by converting its
float tensors, INT8 by Q/DQ nodes from `speedy quantize`.
"""

from pathlib import Path

import onnx

from speedy.errors import SpeedyError
from speedy.onnx_io import load_onnx
from speedy.quantize import fp16 as quantize_fp16

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def qdq_nodes(model: onnx.ModelProto) -> int:
    """How many QuantizeLinear/DequantizeLinear nodes the main graph holds."""
    return sum(node.op_type in QDQ_OPS for node in model.graph.node)


def require_qdq(model_file: Path) -> int:
    """The number of Q/DQ nodes in `model_file`, or a clear error when it has none."""
    count = qdq_nodes(load_onnx(model_file, with_weights=False))
    if count == 0:
        raise SpeedyError(
            f"--int8 needs explicit Q/DQ nodes, and {model_file.parent} has none "
            "(TensorRT 11 removed implicit INT8 calibration)",
            "quantize it first with `speedy quantize` (static Q/DQ), then compile that artifact",
        )
    return count


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with float tensors in FP16, float32 inputs and outputs, Q/DQ nodes left in FP32."""
    return quantize_fp16.to_fp16(model, block=[op for op in QDQ_OPS if qdq_nodes(model)])
