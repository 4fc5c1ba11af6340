"""A streaming graph quantized as its whole graph is: the same layers with the same scales
(static INT8 of the two with `--no-exact-stream`; by default they keep float activations).

A codec's `decoder_step` computes what its `decoder` computes, a chunk at a time with its state,
from the same weights. Calibrated on its own, it gets other activation ranges, and its INT8
stream drifts from the INT8 whole decode (19 dB apart at the published codec_12hz size). Instead,
the whole graph quantizes its weighted layers only, and each weighted layer of the step graph is
matched with the whole graph's layer that holds the same weight (by content: the graphs name
weights differently) and does the same op: it is quantized where its twin is, with its twin's
input and output ranges. Every quantized tensor then has the same scale in both graphs, and the
stream rounds as the whole decode does. The outputs of `OVERLAPPED` ops stay float in both: a step
graph adds the part of such an output that overlaps the last chunk's, and a sum of two rounded
parts is not the rounded sum.
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnxruntime.quantization.calibrate import TensorsData, load_tensors_data, save_tensors_data

from speedy.onnx_io import content_key
from speedy.quantize.graph import Layer

OVERLAPPED = ("ConvTranspose",)  # upsampling: each chunk's output overlaps the next one's


def _keyed(model: onnx.ModelProto, layers: Sequence[Layer]) -> dict[tuple, str]:
    """Each layer by its op type and its weight's content; a key more than one layer holds is
    left out (no single twin)."""
    tensors = {t.name: t for t in model.graph.initializer}
    found: dict[tuple, list[str]] = {}
    for layer in layers:
        key = (layer.op_type, *content_key(tensors[layer.weight]))
        found.setdefault(key, []).append(layer.node)
    return {key: nodes[0] for key, nodes in found.items() if len(nodes) == 1}


def _io(model: onnx.ModelProto) -> dict[str, tuple[str, str]]:
    return {n.name: (n.input[0], n.output[0]) for n in model.graph.node if n.input and n.output}


@dataclass
class WholeGraph:
    """What a step graph's quantization takes from its whole graph's: the whole graph's layers
    by weight, each node's (first) input and output, its ranges and the layers it quantized."""

    layers: dict[tuple, str]
    io: dict[str, tuple[str, str]]
    ranges: Path
    quantized: frozenset[str]

    @classmethod
    def of(
        cls,
        model: onnx.ModelProto,
        layers: Sequence[Layer],
        ranges: Path,
        quantized: Collection[str],
    ) -> "WholeGraph":
        return cls(_keyed(model, layers), _io(model), ranges, frozenset(quantized))

    def twins(self, step: onnx.ModelProto, layers: Sequence[Layer]) -> dict[str, str]:
        """Step-graph node -> whole-graph node, for layers that hold the same weight and do the
        same op."""
        ours = _keyed(step, layers)
        return {ours[key]: self.layers[key] for key in ours.keys() & self.layers.keys()}

    def step_ranges(self, step: onnx.ModelProto, twins: dict[str, str], out: Path) -> Path:
        """An ORT calibration cache for the step graph: each twin layer's input and output take
        the ranges of the whole graph's layer."""
        ranges, io = load_tensors_data(str(self.ranges)), _io(step)
        data = {}
        for ours, theirs in twins.items():
            for mine, whole in zip(io[ours], self.io[theirs], strict=True):
                data[mine] = ranges.data[whole]
        save_tensors_data(TensorsData(ranges.calibration_method, data), str(out))
        return out
