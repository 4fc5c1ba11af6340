"""ONNX -> simpler ONNX per graph (onnxslim, onnxsim or ORT offline passes), dims kept, checked."""

from pathlib import Path
from typing import ClassVar

import onnx

from speedy import runtime
from speedy.artifact import Artifact
from speedy.backends.ort.build import optimize
from speedy.errors import SpeedyError, import_extra
from speedy.onnx_io import graph_stats, load_onnx, save_onnx
from speedy.parity import check
from speedy.scratch import scratch
from speedy.stages.base import Draft, Stage, StageContext, carry_over, check_kind, selected_graphs
from speedy.stages.export import name_dims
from speedy.stages.options import SimplifyOptions


def _onnxslim(model: onnx.ModelProto) -> onnx.ModelProto:
    return import_extra("onnxslim", "onnxslim").slim(model)


def _onnxsim(model: onnx.ModelProto) -> onnx.ModelProto:
    simplified, ok = import_extra("onnxsim", "onnxsim").simplify(model)
    if not ok:
        raise SpeedyError("onnxsim could not validate its result", "try --tool onnxslim")
    return simplified


def _ort(model: onnx.ModelProto) -> onnx.ModelProto:
    """ORT's extended offline passes (the result may hold ORT-only fused ops)."""
    with scratch("simplify") as tmp:
        source, target = tmp / "in.onnx", tmp / "out.onnx"
        optimize(save_onnx(model, source)[0], target, "extended")
        return load_onnx(target)


SIMPLIFIERS = {"onnxslim": _onnxslim, "onnxsim": _onnxsim, "ort": _ort}


class SimplifyStage(Stage):
    """ONNX artifact -> simplified ONNX artifact, with before/after graph statistics."""

    name: ClassVar[str] = "simplify"
    options: SimplifyOptions

    def build(self, parent: Artifact | None, workdir: Path, ctx: StageContext) -> Draft:
        parent = check_kind(parent, "onnx", "simplify", "run `speedy export` first")
        chosen = selected_graphs(self.options, parent)
        graphs = carry_over(parent, workdir, [g for g in parent.manifest.graphs if g not in chosen])
        reports = {}
        for name in chosen:
            entry = parent.manifest.graphs[name]
            model = load_onnx(parent.file(name))
            before = graph_stats(model) | {"bytes": _bytes(parent.path, entry.files)}
            simplified = SIMPLIFIERS[self.options.tool](model)
            name_dims(simplified, name, entry.inputs, entry.outputs, ctx.spec)
            after = graph_stats(simplified)  # before saving: weights may move to external data
            files = save_onnx(simplified, workdir / entry.file)
            after["bytes"] = sum(f.stat().st_size for f in files)
            graphs[name] = entry.model_copy(update={"files": [f.name for f in files]})
            reports[name] = {"before": before, "after": after}
        order = {name: graphs[name] for name in parent.manifest.graphs}
        return Draft(order, reports={"simplify": {"tool": self.options.tool, "graphs": reports}})

    def validate(self, parent: Artifact | None, artifact: Artifact, ctx: StageContext) -> dict:
        assert parent is not None
        return check(
            runtime.load(parent.path, threads=ctx.threads, verify=False),
            runtime.load(artifact.path, threads=ctx.threads, verify=False),
            ctx.task,
            ctx.examples,
            "the simplified model",
            self.options.verify,
            graphs=selected_graphs(self.options, parent),
        )


def _bytes(directory: Path, files: list[str]) -> int:
    return sum((directory / f).stat().st_size for f in files)
