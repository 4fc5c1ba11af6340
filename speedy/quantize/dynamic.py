"""Dynamic INT8: int8 weights, activations quantized at run time (for MatMul-heavy graphs)."""

from collections.abc import Collection
from pathlib import Path

from onnxruntime.quantization import QuantType, quantize_dynamic

from speedy.quantize.progress import quiet_ort


def quantize_dynamic_int8(
    model: Path, out: Path, per_channel: bool, exclude: Collection[str] = ()
) -> None:
    """Dynamic INT8 of every node ORT supports but `exclude`."""
    with quiet_ort():
        quantize_dynamic(
            model,
            out,
            per_channel=per_channel,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(exclude),
        )
