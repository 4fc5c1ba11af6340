"""4-bit weight-only MatMuls: ONNX Runtime's MatMulNBits (what its LLM tooling uses for CPU
decode), float activations, weights in blocks of 4-bit values with a float scale each."""

from collections.abc import Collection
from pathlib import Path

from speedy.onnx_io import load_onnx, save_onnx
from speedy.quantize.progress import quiet_ort

BLOCK = 32  # weights per scale along the input axis


def quantize_matmul_4bits(model: Path, out: Path, exclude: Collection[str] = ()) -> None:
    """Every MatMul with a constant 2-D weight but `exclude` as symmetric 4-bit MatMulNBits."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    with quiet_ort():
        quantizer = MatMulNBitsQuantizer(
            load_onnx(model),
            block_size=BLOCK,
            is_symmetric=True,
            nodes_to_exclude=list(exclude),
        )
        quantizer.process()
    save_onnx(quantizer.model.model, out)
