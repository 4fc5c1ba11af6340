"""PyTorch -> ONNX with the recipe's dynamic dims, checked against PyTorch on real inputs."""

import contextlib
import inspect
import io
import logging
import os
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import onnx
import torch

from speedy import interrupt, onnx_io, rewrites, runtime
from speedy.artifact import Artifact, GraphEntry
from speedy.console import notice
from speedy.diagnose import Cause, diagnose, rewrite_fix, scope_path
from speedy.errors import SpeedyError
from speedy.families import resolve
from speedy.families.base import Family, GraphDef
from speedy.families.network import load_network
from speedy.model_spec import ModelSpec
from speedy.onnx_io import save_onnx
from speedy.parity import check
from speedy.specs import DimRange, TensorSpec, derived
from speedy.stages.base import Draft, Stage, StageContext, check_kind
from speedy.stages.export_check import check_lengths, other_sizes
from speedy.stages.export_divide import divide_reciprocals
from speedy.stages.export_fold import fold_weight_transposes
from speedy.stages.options import Exporter, ExportOptions


@contextlib.contextmanager
def quiet_exporter():
    """Silence the exporters' warnings, progress chatter, error logs and the IR dumps their
    C++ side prints: a failure reaches the user as one line from its exception (with --debug,
    its traceback)."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            open(os.devnull, "w") as devnull,
        ):
            warnings.simplefilter("ignore")
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)
        logger.setLevel(level)


def _export(
    module: torch.nn.Module,
    args: tuple,
    graph: GraphDef,
    dims: Mapping[str, DimRange],
    path: Path,
    exporter: Exporter,
    opset: int,
) -> None:
    names = {
        "input_names": [s.name for s in graph.inputs],
        "output_names": [s.name for s in graph.outputs],
    }
    with quiet_exporter():
        if exporter == "dynamo":
            found = export_dims(dims)
            shapes = {
                s.name: {
                    axis: export_dim(dim, found)
                    for axis, dim in enumerate(s.shape)
                    if isinstance(dim, str)
                }
                for s in graph.inputs
            }
            torch.onnx.export(
                module,
                args,
                str(path),
                dynamo=True,
                dynamic_shapes=by_signature(module, shapes),
                opset_version=opset,
                external_data=weight_bytes(module) >= onnx_io.PROTOBUF_LIMIT - (1 << 26),
                verbose=False,
                **names,
            )
        else:
            axes = {
                s.name: {axis: dim for axis, dim in enumerate(s.shape) if isinstance(dim, str)}
                for s in graph.inputs + graph.outputs
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


def weight_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers: past protobuf's 2 GB, the exporters write
    the weights to an external data file."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def export_dims(dims: Mapping[str, DimRange]) -> dict[str, torch.export.Dim]:
    """A `torch.export.Dim` per symbol with its declared range."""
    return {name: torch.export.Dim(name, min=r.min, max=r.max) for name, r in dims.items()}


def export_dim(dim: str, found: Mapping[str, torch.export.Dim]) -> torch.export.Dim:
    """The export Dim of a symbol, or the expression of a derived dim ("past+1": past + 1)."""
    rule = derived(dim)
    if rule is None:
        return found[dim]
    return found[rule.base] + rule.value if rule.op == "+" else found[rule.base] * rule.value


def by_signature(module: torch.nn.Module, shapes: dict[str, dict]) -> dict | tuple:
    """`shapes` (per graph input, in order) as torch.export wants them for `module.forward`: as
    they are, keyed by name, unless it takes `*args` (a step graph's state tensors); then
    positionally, the inputs past its named parameters grouped as that tuple."""
    parameters = list(inspect.signature(module.forward).parameters.values())
    if not any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return shapes
    named = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)
    values = list(shapes.values())
    return (*values[:named], tuple(values[named:]))


def failure(*causes: tuple[Exporter, Cause | SpeedyError]) -> SpeedyError:
    """One error from each exporter's failure, the first one's first (with its fix)."""
    parts = [
        f"{exporter}: {c.describe() if isinstance(c, Cause) else c.problem}"
        for exporter, c in causes
    ]
    return SpeedyError(f"export failed: {'; '.join(parts)}", causes[0][1].fix)


def recurrent_failure(
    cause: tuple[Exporter, Cause | SpeedyError], network: torch.nn.Module, layers: list[str]
) -> SpeedyError:
    """An export of a network with recurrent layers that failed: the layers named, and the
    rewrite that keeps their batch and length dynamic."""
    first = network.get_submodule(layers[0])
    more = f" and {len(layers) - 1} more recurrent layer(s)" if len(layers) > 1 else ""
    return SpeedyError(
        f"{failure(cause).problem}; the network runs {rewrites.where(layers[0], first)}{more} "
        "over a dynamic length, which the exporters freeze",
        rewrite_fix("lstm", ""),
    )


def name_nodes(model: onnx.ModelProto) -> None:
    """Name each node the dynamo exporter placed in a module after that module, as the
    torchscript exporter does ("/backbone.pwconv1/MatMul"): quantization then groups and names
    layers by module path where the exporter named a weight `val_5`."""
    counts: Counter[str] = Counter()
    for node in model.graph.node:
        if path := scope_path(node):
            base = f"/{path}/{node.op_type}"
            node.name = f"{base}_{counts[base]}" if counts[base] else base
            counts[base] += 1


def name_dims(
    model: onnx.ModelProto,
    graph: str,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    spec: ModelSpec,
) -> None:
    """Give graph inputs and outputs their symbolic dim names, and store metadata."""
    values = [*model.graph.input, *model.graph.output]
    if len(values) != len(inputs + outputs):
        raise SpeedyError(
            f"graph {graph} has inputs {[v.name for v in model.graph.input]} and outputs "
            f"{[v.name for v in model.graph.output]}, not {[t.name for t in inputs + outputs]}",
            "declare the model's inputs and outputs as its forward takes and returns them",
        )
    for value, tensor in zip(values, inputs + outputs, strict=True):
        shape = value.type.tensor_type.shape.dim
        if len(shape) != len(tensor.shape):
            raise SpeedyError(
                f"'{tensor.name}' of graph {graph} has rank {len(shape)}, not "
                f"{len(tensor.shape)} as declared ({tensor.describe()})",
                "declare it with the rank the model gives it",
            )
        for dim_proto, dim in zip(shape, tensor.shape, strict=True):
            if isinstance(dim, str):
                dim_proto.dim_param = dim
    model.metadata_props.clear()
    for key, val in {
        "speedy.recipe": spec.recipe,
        "speedy.graph": graph,
        "speedy.audio": spec.audio.model_dump_json(),
    }.items():
        model.metadata_props.add(key=key, value=val)


def _cause(exc: Exception, module: torch.nn.Module, args: tuple) -> Cause | SpeedyError:
    """An exporter's failure explained (a length check's error as it is)."""
    interrupt.check()  # the exporter may have wrapped an interrupt as its own failure
    if isinstance(exc, (OSError, MemoryError)):  # the machine's limit, not the exporter's
        raise exc
    return exc if isinstance(exc, SpeedyError) else diagnose(exc, module, args)


def _short(cause: Cause | SpeedyError) -> str:
    return cause.what if isinstance(cause, Cause) else cause.problem


@dataclass(frozen=True)
class LengthCheck:
    """Runs an exported graph at sizes other than the tracing ones against PyTorch."""

    family: Family
    graph: GraphDef
    trace: dict[str, int]
    dims: Mapping[str, DimRange]

    def __call__(self, module: torch.nn.Module, path: Path) -> None:
        sizes = other_sizes(self.dims, self.trace)
        if sizes != self.trace:
            feeds = self.family.dummy_feeds(self.graph.name, sizes, seed=1)
            check_lengths(path, module, self.graph, feeds, sizes, self.trace)


class ExportStage(Stage):
    """torch artifact -> ONNX artifact, one file per graph."""

    name: ClassVar[str] = "export"
    options: ExportOptions

    def build(self, parent: Artifact | None, workdir: Path, ctx: StageContext) -> Draft:
        parent = check_kind(parent, "torch", "export", "pass a recipe or a torch artifact")
        spec = ctx.spec
        trace = spec.sizes(self.options.trace_sizes)
        if any(trace == spec.sizes(sizes) for sizes in spec.parity.sizes):
            raise SpeedyError(
                f"a parity size equals the tracing size {trace}",
                "check parity at sizes never used for tracing",
            )
        family = resolve(spec)
        network = load_network(spec, parent.file(next(iter(parent.manifest.graphs))))
        modules, rewritten, inputs = {}, {}, {}
        for graph in family.graphs():
            feeds = family.dummy_feeds(graph.name, trace)
            inputs[graph.name] = tuple(torch.from_numpy(feeds[s.name]) for s in graph.inputs)
            modules[graph.name], rewritten[graph.name] = rewrites.apply(
                family.graph_module(network, graph.name), self.options.rewrites, inputs[graph.name]
            )
        rewrites.check_found(self.options.rewrites, rewritten)
        graphs, exporters = {}, {}
        for graph in family.graphs():
            module, args = modules[graph.name], inputs[graph.name]
            path = workdir / f"{graph.name}.onnx"
            with tempfile.TemporaryDirectory(dir=workdir) as raw:
                # the exporter's own file (and any weights it put beside it) stays behind
                exported = Path(raw) / path.name
                check = LengthCheck(family, graph, trace, spec.dims)
                exporters[graph.name] = self._export(module, args, graph, spec, exported, check)
                model = onnx.load(str(exported))
            divide_reciprocals(model)
            name_nodes(model)
            fold_weight_transposes(model)
            name_dims(model, graph.name, graph.inputs, graph.outputs, spec)
            files = save_onnx(model, path)  # past 2 GB, with its weights beside it
            onnx.checker.check_model(str(path))
            graphs[graph.name] = GraphEntry(
                kind="onnx",
                files=[f.name for f in files],
                inputs=graph.inputs,
                outputs=graph.outputs,
            )
        if done := [entry for entries in rewritten.values() for entry in entries]:
            notice(f"rewrote {', '.join(done)}")
        return Draft(graphs, reports={"exporter": exporters, "rewrites": rewritten})

    def _export(
        self,
        module: torch.nn.Module,
        args: tuple,
        graph: GraphDef,
        spec: ModelSpec,
        path: Path,
        check: "LengthCheck",
    ) -> Exporter:
        """Export one graph and check its lengths; the exporter that succeeded."""
        exporter, opset = self.options.exporter, self.options.opset
        try:
            _export(module, args, graph, spec.dims, path, exporter, opset)
            check(module, path)
            return exporter
        except Exception as exc:
            first = _cause(exc, module, args)
            if recurrent := rewrites.lstm.targets(module):  # what fails here fails the fallback too
                raise recurrent_failure((exporter, first), module, recurrent) from exc
            if not (self.options.fallback and exporter == "dynamo"):
                raise failure((exporter, first)) from exc
        notice(f"dynamo exporter failed ({_short(first)}); falling back to torchscript")
        try:
            _export(module, args, graph, spec.dims, path, "torchscript", opset)
            check(module, path)
        except Exception as exc:
            raise failure(("dynamo", first), ("torchscript", _cause(exc, module, args))) from exc
        return "torchscript"

    def validate(self, parent: Artifact | None, artifact: Artifact, ctx: StageContext) -> dict:
        assert parent is not None
        return check(
            runtime.load(parent.path, threads=ctx.threads, verify=False),
            runtime.load(artifact.path, threads=ctx.threads, verify=False),
            ctx.task,
            ctx.examples,
            "the exported ONNX model",
            self.options.verify,
        )
