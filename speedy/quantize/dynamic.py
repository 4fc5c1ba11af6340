"""Dynamic INT8: int8 weights, activations quantized at run time (for MatMul-heavy graphs)."""

from pathlib import Path

from onnxruntime.quantization import QuantType, quantize_dynamic

from speedy.quantize.progress import quiet_ort


def quantize_dynamic_int8(model: Path, out: Path, per_channel: bool) -> None:
    """Dynamic INT8 with ORT's defaults for the op types it supports."""
    with quiet_ort():
        quantize_dynamic(model, out, per_channel=per_channel, weight_type=QuantType.QInt8)
