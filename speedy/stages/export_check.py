"""Catch, at export, a graph whose shapes do not follow its inputs: run it at sizes other than
the tracing ones and compare its output shapes with PyTorch's (a torchscript trace freezes
Python ints, an exporter may specialise a dim to its tracing size)."""

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from speedy.diagnose import RNN_TYPES, Site, clean, onnx_node_site, rewrite_fix
from speedy.errors import SpeedyError
from speedy.families.base import GraphDef
from speedy.specs import DimRange, Feeds

FROZEN = "the exported graph froze a length at the tracing size"
FIX = (
    "compute lengths from tensor shapes (a torchscript trace keeps Python ints as constants), "
    "or try the other --exporter"
)


def other_sizes(dims: Mapping[str, DimRange], trace: Mapping[str, int]) -> dict[str, int]:
    """For each dim, a size in its range other than the tracing one (a third or so away)."""
    sizes = {}
    for name, limits in dims.items():
        size, step = trace[name], max(1, trace[name] // 3)
        sizes[name] = size + step if size + step <= limits.max else max(limits.min, size - step)
    return sizes


def _session(path: Path, optimize: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 4  # failures reach the user as the exception, not a log line
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _outputs(module: torch.nn.Module, feeds: Feeds, graph: GraphDef) -> list[np.ndarray]:
    with torch.no_grad():
        result = module(*(torch.from_numpy(feeds[s.name]) for s in graph.inputs))
    results = result if isinstance(result, tuple | list) else (result,)
    return [r.numpy() for r in results]


def check_lengths(
    path: Path,
    module: torch.nn.Module,
    graph: GraphDef,
    feeds: Feeds,
    sizes: Mapping[str, int],
    trace: Mapping[str, int],
) -> None:
    """Raise a SpeedyError naming the input or output whose shape the exported graph at `path`
    froze, found by running it on `feeds` (at `sizes`, not the tracing sizes `trace`)."""
    model = onnx.load(str(path), load_external_data=False)
    at = ", ".join(f"{d}={n}" for d, n in sizes.items() if n != trace.get(d))
    traced = ", ".join(f"{d}={trace[d]}" for d in sizes if sizes[d] != trace.get(d))
    declared = {s.name: s for s in graph.inputs}
    found = {value.name: value for value in model.graph.input}
    if lost := [name for name in declared if name not in found]:
        raise SpeedyError(
            f"the exported graph lost input '{lost[0]}': the exporter found no output that "
            "depends on it (a value computed from it was traced as a constant)",
            FIX,
        )
    for name, value in found.items():
        for axis, (dim, proto) in enumerate(
            zip(declared[name].shape, value.type.tensor_type.shape.dim, strict=False)
        ):
            if isinstance(dim, str) and proto.HasField("dim_value"):
                raise _frozen(
                    f"input '{name}' has axis {axis} ({dim}) fixed at its tracing size "
                    f"{proto.dim_value}",
                    path,
                    module,
                    feeds,
                )
    try:
        actual = _session(path, optimize=True).run(None, {n: feeds[n] for n in found})
    except Exception as exc:
        reason = clean(str(exc)).split("Status Message:")[-1].strip()[:200]
        raise _frozen(f"the exported graph fails at {at} ({reason})", path, module, feeds) from exc
    expected = _outputs(module, feeds, graph)
    for spec, want, got in zip(graph.outputs, expected, actual, strict=False):
        for axis, (w, g) in enumerate(zip(want.shape, got.shape, strict=False)):
            if w != g:
                raise _frozen(
                    f"output '{spec.name}' has {g} on axis {axis} at {at} where PyTorch gives "
                    f"{w}: {FROZEN} ({traced})",
                    path,
                    module,
                    feeds,
                )
        if want.ndim != got.ndim:
            raise SpeedyError(
                f"output '{spec.name}' has rank {got.ndim} in the exported graph, {want.ndim} "
                "in PyTorch",
                FIX,
            )


def _frozen(problem: str, path: Path, module: torch.nn.Module, feeds: Feeds) -> SpeedyError:
    site = frozen_site(path, module, feeds)
    rewrite = "lstm" if any(t in (site.module or "") for t in RNN_TYPES) else None
    where = f" {site}" if site.module or site.source else ""
    return SpeedyError(f"{problem}{where}", rewrite_fix(rewrite, FIX))


def frozen_site(path: Path, module: torch.nn.Module, feeds: Feeds) -> Site:
    """The first node whose output shape, run unoptimized at the feeds' sizes (those of
    inputs it accepts), differs from the static shape the exporter recorded for it."""
    model = onnx.load(str(path))
    recorded = {
        v.name: [
            d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim
        ]
        for v in model.graph.value_info
    }
    fitted = {}  # a fixed input dim keeps its recorded size
    for value in model.graph.input:
        array = feeds[value.name]
        dims = zip(value.type.tensor_type.shape.dim, array.shape, strict=True)
        shape = tuple(d.dim_value if d.HasField("dim_value") else n for d, n in dims)
        fitted[value.name] = array if shape == array.shape else np.resize(array, shape)
    existing = {o.name for o in model.graph.output}
    for name in recorded:
        if name not in existing:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    probe = path.with_name(f"probe-{path.name}")
    onnx.save(model, str(probe))
    try:
        session = _session(probe, optimize=False)
        names = [o.name for o in session.get_outputs()]
        values = dict(zip(names, session.run(None, fitted), strict=True))
    except Exception as exc:
        failed = next((n for n in model.graph.node if f"'{n.name}'" in str(exc)), None)
        return onnx_node_site(failed, module) if failed is not None else Site()
    finally:
        probe.unlink(missing_ok=True)
    for node in model.graph.node:
        for output in node.output:
            want, got = recorded.get(output), values.get(output)
            if want is None or got is None or len(want) != got.ndim:
                continue
            if any(w is not None and w != g for w, g in zip(want, got.shape, strict=True)):
                return onnx_node_site(node, module)
    return Site()
