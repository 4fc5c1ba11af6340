"""PyTorch -> ONNX with the recipe's dynamic dims, checked against PyTorch on real inputs."""

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import ClassVar, Literal

import onnx
import torch
from pydantic import BaseModel, ConfigDict, Field

from speedy import interrupt
from speedy.artifact import Artifact
from speedy.console import notice
from speedy.errors import SpeedyError
from speedy.model_spec import ModelSpec
from speedy.onnx_io import save_onnx
from speedy.parity import check
from speedy.runtime.onnx_session import OnnxSession
from speedy.runtime.torch_session import TorchSession
from speedy.stages.base import Draft, Stage, StageContext
from speedy.torch_utils import source_module, unsupported_op

Exporter = Literal["dynamo", "torchscript"]
MODEL_FILE = "model.onnx"


class ExportOptions(BaseModel):
    """Exporter settings; tracing sizes must differ from every parity size."""

    model_config = ConfigDict(extra="forbid")

    opset: int = Field(18, ge=13, le=23)
    exporter: Exporter = "dynamo"
    fallback: bool = True
    trace_sizes: dict[str, int] = Field(default_factory=dict)
    verify: bool = True


@contextlib.contextmanager
def quiet_exporter():
    """Silence the exporters' warnings, progress chatter and error logs: a failure reaches the
    user as one line from its exception (with --debug, its traceback)."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _export(
    module: torch.nn.Module,
    args: tuple,
    spec: ModelSpec,
    path: Path,
    exporter: Exporter,
    opset: int,
) -> None:
    inputs, outputs = spec.inputs(), spec.outputs()
    names = {"input_names": [s.name for s in inputs], "output_names": [s.name for s in outputs]}
    with quiet_exporter():
        if exporter == "dynamo":
            shapes = {
                s.name: {
                    axis: torch.export.Dim(dim, min=spec.dims[dim].min, max=spec.dims[dim].max)
                    for axis, dim in enumerate(s.shape)
                    if isinstance(dim, str)
                }
                for s in inputs
            }
            torch.onnx.export(
                module,
                args,
                str(path),
                dynamo=True,
                dynamic_shapes=shapes,
                opset_version=opset,
                external_data=False,
                verbose=False,
                **names,
            )
        else:
            axes = {
                s.name: {axis: dim for axis, dim in enumerate(s.shape) if isinstance(dim, str)}
                for s in inputs + outputs
            }
            torch.onnx.export(
                module,
                args,
                str(path),
                dynamo=False,
                dynamic_axes=axes,
                opset_version=opset,
                **names,
            )


def _explain_failure(exc: Exception, module: torch.nn.Module, args: tuple) -> SpeedyError:
    op = unsupported_op(str(exc))
    if op is None:
        first_line = next((line for line in str(exc).splitlines() if line.strip()), repr(exc))
        return SpeedyError(
            f"export failed: {first_line}", "run with --debug for the full exporter report"
        )
    where = source_module(module, args, op) or "an unknown module"
    return SpeedyError(
        f"operator {op} (called in {where}) has no ONNX conversion",
        "rewrite it with standard torch ops, register an ONNX translation for it, "
        "or try the other --exporter / a newer --opset",
    )


def name_dims(model: onnx.ModelProto, spec: ModelSpec) -> None:
    """Give graph inputs and outputs the recipe's symbolic dim names, and store metadata."""
    for value, tensor in zip(
        [*model.graph.input, *model.graph.output], spec.inputs() + spec.outputs(), strict=True
    ):
        for dim_proto, dim in zip(value.type.tensor_type.shape.dim, tensor.shape, strict=True):
            if isinstance(dim, str):
                dim_proto.dim_param = dim
    model.metadata_props.clear()
    for key, val in {
        "speedy.recipe": spec.recipe,
        "speedy.audio": spec.audio.model_dump_json(),
    }.items():
        model.metadata_props.add(key=key, value=val)


class ExportStage(Stage):
    """torch artifact -> ONNX artifact."""

    name: ClassVar[str] = "export"
    options: ExportOptions

    def build(self, parent: Artifact | None, workdir: Path, ctx: StageContext) -> Draft:
        if parent is None or parent.manifest.kind != "torch":
            raise SpeedyError(
                "export needs a PyTorch artifact", "pass a recipe or a torch artifact"
            )
        trace = ctx.spec.sizes(self.options.trace_sizes)
        if any(trace == ctx.spec.sizes(sizes) for sizes in ctx.spec.parity.sizes):
            raise SpeedyError(
                f"a parity size equals the tracing size {trace}",
                "check parity at sizes never used for tracing",
            )
        module = TorchSession(parent.manifest, parent.model_file).module
        feeds = ctx.spec.adapter().example_feeds(trace)
        args = tuple(torch.from_numpy(feeds[s.name]) for s in ctx.spec.inputs())
        path, exporter = workdir / MODEL_FILE, self.options.exporter
        try:
            _export(module, args, ctx.spec, path, exporter, self.options.opset)
        except Exception as exc:
            interrupt.check()  # the exporter may have wrapped an interrupt as its own failure
            if not (self.options.fallback and exporter == "dynamo"):
                raise _explain_failure(exc, module, args) from exc
            notice(f"dynamo exporter failed ({type(exc).__name__}); falling back to torchscript")
            exporter = "torchscript"
            try:
                _export(module, args, ctx.spec, path, exporter, self.options.opset)
            except Exception as exc2:
                raise _explain_failure(exc2, module, args) from exc2
        model = onnx.load(str(path))
        name_dims(model, ctx.spec)
        onnx.checker.check_model(model)
        files = save_onnx(model, path)
        return Draft(kind="onnx", files=[f.name for f in files], reports={"exporter": exporter})

    def validate(self, parent: Artifact | None, artifact: Artifact, ctx: StageContext) -> dict:
        assert parent is not None
        return check(
            TorchSession(parent.manifest, parent.model_file, threads=ctx.threads),
            OnnxSession(artifact.manifest, artifact.model_file, threads=ctx.threads),
            ctx.spec,
            ctx.features,
            "the exported ONNX model",
            self.options.verify,
        )
