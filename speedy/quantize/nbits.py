"""4-bit weight-only MatMuls: ONNX Runtime's MatMulNBits (what its LLM tooling uses for CPU
decode), weights in blocks of 4-bit values with a float scale each; the products in 8-bit
integers (accuracy level 4: activations quantized per block as the MatMul runs), as ONNX Runtime's
model builder sets for CPU."""

from collections.abc import Collection
from pathlib import Path

import onnx

from speedy.onnx_io import load_onnx, save_onnx
from speedy.quantize.progress import quiet_ort

BLOCK = 32  # weights per scale along the input axis
INT8_PRODUCTS = 4  # MatMulNBits' accuracy_level: int8 activations, int32 sums


def quantize_matmul_4bits(model: Path, out: Path, exclude: Collection[str] = ()) -> None:
    """Every MatMul with a constant 2-D weight but `exclude` as symmetric 4-bit MatMulNBits."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    with quiet_ort():
        quantizer = MatMulNBitsQuantizer(
            load_onnx(model),
            block_size=BLOCK,
            is_symmetric=True,
            accuracy_level=INT8_PRODUCTS,
            nodes_to_exclude=list(exclude),
        )
        quantizer.process()
    save_onnx(_one_copy_each(quantizer.model.model), out)


def _one_copy_each(model: onnx.ModelProto) -> onnx.ModelProto:
    """The quantizer adds a weight's 4-bit blocks and scales once per MatMul that reads it (an
    unrolled graph's steps share their layers): keep one of each name."""
    unique: dict[str, onnx.TensorProto] = {}
    for tensor in model.graph.initializer:
        unique.setdefault(tensor.name, tensor)
    del model.graph.initializer[:]
    model.graph.initializer.extend(unique.values())
    return model
