"""Static INT8 Q/DQ through `onnxruntime.quantization`, and which Q/DQ layers ORT CPU fuses.

Activations are uint8 and weights int8 (per channel by default): the pairing ORT's x86 CPU
kernels run fastest. On ORT's CPU execution provider a speed-up needs fused int8 kernels
(QLinearConv and friends); a layer left as a float op between DequantizeLinear and
QuantizeLinear gains nothing and only adds rounding error, which `unfused_nodes` finds.
"""

import contextlib
import os
from collections.abc import Collection, Iterator
from pathlib import Path

import onnx
import onnxruntime as ort
from onnx import version_converter
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from speedy.onnx_io import default_opset, load_onnx, save_onnx
from speedy.quantize.progress import quiet_ort
from speedy.quantize.ranges import ORT_METHODS, Method
from speedy.scratch import scratch

QDQ_OPSET = 13  # per-channel DequantizeLinear (its `axis`) needs opset 13


@contextlib.contextmanager
def working_directory(directory: Path) -> Iterator[None]:
    """Run a block in `directory`: ORT's symbolic shape inference writes a debug model (and its
    external data) into the current directory when it gives up."""
    previous = Path.cwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(previous)


def preprocess(source: Path, target: Path) -> onnx.ModelProto:
    """ORT's pre-quantization pass (shape inference, basic graph optimizations), every node
    named so it can be chosen for quantization, older graphs raised to opset 13; run inside
    `target`'s (temporary) directory, on a copy of `source` whose weights are there too (ORT's
    tools resolve external data beside the files they write)."""
    target = target.resolve()
    source = save_onnx(load_onnx(source), target.with_name("source.onnx"))[0]
    with quiet_ort(), working_directory(target.parent):
        try:
            quant_pre_process(str(source), str(target))
        except Exception:  # ORT's symbolic shape inference gives up on some valid graphs
            quant_pre_process(str(source), str(target), skip_symbolic_shape=True)
    model = onnx.load(str(target))
    if default_opset(model) < QDQ_OPSET:
        model = version_converter.convert_version(model, QDQ_OPSET)
    for index, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{index}"
    onnx.save(model, str(target))
    return model


def quantize_qdq(
    model: Path,
    out: Path,
    ranges: Path,
    method: Method,
    nodes: Collection[str] | None,
    per_channel: bool = True,
    exclude: Collection[str] = (),
    float_outputs: Collection[str] = (),
) -> None:
    """Static INT8 Q/DQ of `nodes` (None: every node ORT can quantize but `exclude`) with
    cached `ranges`; nodes of the op types `float_outputs` keep float outputs."""
    if nodes is not None and not nodes:
        raise ValueError("quantize_qdq needs at least one node (None means all)")
    with quiet_ort():
        quantize_static(
            str(model),
            str(out),
            None,
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_quantize=list(nodes) if nodes is not None else None,
            nodes_to_exclude=list(exclude),
            calibrate_method=ORT_METHODS.get(method, ORT_METHODS["minmax"]),
            calibration_cache_path=str(ranges),
            extra_options={"OpTypesToExcludeOutputQuantization": list(float_outputs)},
        )


def unfused_nodes(qdq_model: Path, candidates: Collection[str]) -> set[str]:
    """Of `candidates` (nodes quantized in `qdq_model`), those ORT's CPU provider still runs as
    the same float op after its graph optimizations: no int8 kernel took them."""
    graph = onnx.load(str(qdq_model), load_external_data=False).graph
    original = {n.name: n.op_type for n in graph.node}
    with scratch("fusion") as tmp:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.optimized_model_filepath = str(tmp / "optimized.onnx")
        ort.InferenceSession(str(qdq_model), options, providers=["CPUExecutionProvider"])
        optimized = onnx.load(options.optimized_model_filepath, load_external_data=False)
    return {
        n.name
        for n in optimized.graph.node
        if n.name in candidates and n.op_type == original.get(n.name)
    }
