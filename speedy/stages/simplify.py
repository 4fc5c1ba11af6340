"""ONNX -> smaller ONNX (onnxslim, onnxsim or ORT offline passes), dims kept symbolic, checked."""

import importlib
import tempfile
from pathlib import Path
from typing import ClassVar, Literal

import onnx
import onnxruntime as ort
from pydantic import BaseModel, ConfigDict

from speedy.artifact import Artifact
from speedy.errors import SpeedyError
from speedy.onnx_io import graph_stats, load_onnx, save_onnx
from speedy.parity import check
from speedy.runtime.onnx_session import OnnxSession
from speedy.stages.base import Draft, Stage, StageContext
from speedy.stages.export import MODEL_FILE, name_dims

Tool = Literal["onnxslim", "onnxsim", "ort"]


class SimplifyOptions(BaseModel):
    """Which simplifier to run."""

    model_config = ConfigDict(extra="forbid")

    tool: Tool = "onnxslim"
    verify: bool = True


def _import(module: str, extra: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SpeedyError(
            f"{module} is not installed", f"pip install 'openspeedy[{extra}]'"
        ) from None


def _onnxslim(model: onnx.ModelProto) -> onnx.ModelProto:
    return _import("onnxslim", "onnxslim").slim(model)


def _onnxsim(model: onnx.ModelProto) -> onnx.ModelProto:
    simplified, ok = _import("onnxsim", "onnxsim").simplify(model)
    if not ok:
        raise SpeedyError("onnxsim could not validate its result", "try --tool onnxslim")
    return simplified


def _ort(model: onnx.ModelProto) -> onnx.ModelProto:
    """ORT's extended offline passes (the result may hold ORT-only fused ops)."""
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        save_onnx(model, source)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(target)
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        return onnx.load(str(target))


SIMPLIFIERS = {"onnxslim": _onnxslim, "onnxsim": _onnxsim, "ort": _ort}


class SimplifyStage(Stage):
    """ONNX artifact -> simplified ONNX artifact, with before/after graph statistics."""

    name: ClassVar[str] = "simplify"
    options: SimplifyOptions

    def build(self, parent: Artifact | None, workdir: Path, ctx: StageContext) -> Draft:
        if parent is None or parent.manifest.kind != "onnx":
            raise SpeedyError("simplify needs an ONNX artifact", "run `speedy export` first")
        model = load_onnx(parent.model_file)
        before = graph_stats(model) | {"bytes": parent.size_bytes}
        simplified = SIMPLIFIERS[self.options.tool](model)
        name_dims(simplified, ctx.spec)
        files = save_onnx(simplified, workdir / MODEL_FILE)
        after = graph_stats(simplified) | {"bytes": sum(f.stat().st_size for f in files)}
        return Draft(
            kind="onnx",
            files=[f.name for f in files],
            precision=parent.manifest.precision,
            reports={"simplify": {"tool": self.options.tool, "before": before, "after": after}},
        )

    def validate(self, parent: Artifact | None, artifact: Artifact, ctx: StageContext) -> dict:
        assert parent is not None
        return check(
            OnnxSession(parent.manifest, parent.model_file, threads=ctx.threads),
            OnnxSession(artifact.manifest, artifact.model_file, threads=ctx.threads),
            ctx.spec,
            ctx.features,
            "the simplified model",
            self.options.verify,
        )
