"""FP16 weights and compute with float32 inputs and outputs.

Uses ONNX Runtime's bundled converter (`onnxruntime.transformers.float16`, the same code as
`onnxconverter-common`'s), so FP16 needs no extra dependency. Blocked op types and nodes stay
float32, with casts around them.
"""

from collections.abc import Collection

import onnx
from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

from speedy.quantize.progress import quiet_ort


def to_fp16(model: onnx.ModelProto, block: Collection[str] = ()) -> onnx.ModelProto:
    """`model` in FP16, I/O kept float32; `block` names op types or nodes to keep float32."""
    op_types = {n.op_type for n in model.graph.node}
    blocked_ops = [*DEFAULT_OP_BLOCK_LIST, *(b for b in block if b in op_types)]
    blocked_nodes = [b for b in block if b not in op_types]
    with quiet_ort():
        return convert_float_to_float16(
            model, keep_io_types=True, op_block_list=blocked_ops, node_block_list=blocked_nodes
        )
