"""Build a model with a chosen set of groups in INT8 and the rest in float.

INT8 groups get static Q/DQ on every node ORT can fuse; float groups (and layers ORT CPU has no
int8 kernel for) keep float activations, with their weights stored as `float_weights` says
(int8, fp16 or float32).
"""

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from speedy.onnx_io import save_onnx
from speedy.quantize.graph import GraphInfo
from speedy.quantize.qdq import quantize_qdq, unfused_nodes
from speedy.quantize.ranges import Method
from speedy.quantize.weight_only import store_weights
from speedy.stages.options import FloatWeights


@dataclass
class Builder:
    """Candidate models of one pre-processed float model with one set of activation ranges."""

    model: Path
    ranges: Path
    method: Method
    info: GraphInfo
    per_channel: bool = True
    float_weights: FloatWeights = "int8"
    unfused: set[str] = field(default_factory=set)

    def int8_nodes(self, groups: Collection[str]) -> list[str]:
        members = (node for group in groups for node in self.info.members[group])
        return [node for node in members if node not in self.unfused]

    def build(self, groups: Collection[str], out: Path) -> Path:
        """Write the model with `groups` in INT8 to `out`."""
        nodes = self.int8_nodes(groups)
        if nodes:
            quantize_qdq(self.model, out, self.ranges, self.method, nodes, self.per_channel)
            model = onnx.load(str(out))
        else:
            model = onnx.load(str(self.model))
        if self.float_weights != "fp32":
            layers = {layer.node for layer in self.info.layers}
            store_weights(model, layers - set(nodes), self.float_weights)
        save_onnx(model, out)
        return out

    def find_unfused(self, out: Path) -> set[str]:
        """Build everything in INT8 once and remember the layers ORT CPU leaves unfused."""
        self.unfused = set()
        self.build(self.info.groups, out)
        self.unfused = unfused_nodes(out, {layer.node for layer in self.info.layers})
        return self.unfused
