"""ONNX -> simpler ONNX per graph (onnxslim, onnxsim or ORT offline passes), dims kept, checked."""

from collections.abc import Set
from pathlib import Path
from typing import ClassVar

import onnx

from speedy import runtime
from speedy.artifact import Artifact
from speedy.backends.ort.build import optimize
from speedy.console import notice
from speedy.errors import SpeedyError, import_extra
from speedy.onnx_io import content_key, graph_stats, load_onnx, save_onnx
from speedy.parity import check
from speedy.scratch import scratch
from speedy.stages.base import Draft, Stage, StageContext, carry_over, check_kind, selected_graphs
from speedy.stages.export import name_dims
from speedy.stages.options import SimplifyOptions


def _onnxslim(model: onnx.ModelProto, fold_limit: int | None) -> onnx.ModelProto:
    limit = {} if fold_limit is None else {"size_threshold": fold_limit}
    return import_extra("onnxslim", "onnxslim").slim(model, **limit)


def _onnxsim(model: onnx.ModelProto, fold_limit: int | None) -> onnx.ModelProto:
    limit = {} if fold_limit is None else {"tensor_size_threshold": f"{fold_limit}B"}
    simplified, ok = import_extra("onnxsim", "onnxsim").simplify(model, **limit)
    if not ok:
        raise SpeedyError("onnxsim could not validate its result", "try --tool onnxslim")
    return simplified


def _ort(model: onnx.ModelProto, fold_limit: int | None) -> onnx.ModelProto:
    """ORT's extended offline passes (the result may hold ORT-only fused ops; ORT's folding
    takes no size limit)."""
    with scratch("simplify") as tmp:
        source, target = tmp / "in.onnx", tmp / "out.onnx"
        optimize(save_onnx(model, source)[0], target, "extended")
        return load_onnx(target)


MIN_FOLD_LIMIT = 1024  # bytes: folding smaller constants (shapes, scalars) is what simplify is for
# each takes the model and the largest constant its folding may make (None: any size)
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
        held = {name: _digests(load_onnx(parent.file(name))) for name in parent.manifest.graphs}
        for name in chosen:
            entry = parent.manifest.graphs[name]
            model = load_onnx(parent.file(name))
            elsewhere = set().union(*(d for g, d in held.items() if g != name))
            simplified, report = self._simplified(model, elsewhere)
            if grown := report.get("grown_bytes"):
                notice(
                    f"{self.options.tool} grew the weights stored for graph {name} by "
                    f"{grown / 1e6:.1f} MB (constants folded from weights kept here or in "
                    "another graph); --tool onnxslim, whose folding speedy limits, does not"
                )
            name_dims(simplified, name, entry.inputs, entry.outputs, ctx.spec)
            files = save_onnx(simplified, workdir / entry.file)
            graphs[name] = entry.model_copy(update={"files": [f.name for f in files]})
            reports[name] = report
        order = {name: graphs[name] for name in parent.manifest.graphs}
        return Draft(order, reports={"simplify": {"tool": self.options.tool, "graphs": reports}})

    def _simplified(
        self, model: onnx.ModelProto, elsewhere: Set[tuple] = frozenset()
    ) -> tuple[onnx.ModelProto, dict]:
        """The simplified model and its before/after statistics. Folding may not grow the
        weights the artifact stores: when the constants it makes outweigh the weights it frees
        (those no graph holds any more: `elsewhere` are the other graphs' weights; a weight kept
        and its transpose folded beside it frees nothing), the model is simplified again,
        folding only constants smaller than the smallest of the new ones; then, while it still
        grows (a fold's intermediates count too), a quarter of that, down to `MIN_FOLD_LIMIT`."""
        simplify, before = SIMPLIFIERS[self.options.tool], graph_stats(model)
        simplified, own = simplify(_copy(model), None), _digests(model)
        report = {"before": before}
        if _grown(own, simplified, elsewhere):
            new = _digests(simplified) - own
            limit = min(size for *_, size in new) - 1
            while True:
                simplified = simplify(_copy(model), limit)
                report |= {"fold_limit": limit, "grown_bytes": _grown(own, simplified, elsewhere)}
                if not report["grown_bytes"] or limit < 4 * MIN_FOLD_LIMIT:
                    break
                limit //= 4
        return simplified, report | {"after": graph_stats(simplified)}

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


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def _digests(model: onnx.ModelProto) -> set[tuple]:
    """Each initializer's content key and size: what the weight pool stores once."""
    return {(*content_key(t), len(t.raw_data)) for t in model.graph.initializer}


def _grown(before: Set[tuple], simplified: onnx.ModelProto, elsewhere: Set[tuple]) -> int:
    """Bytes the artifact stores more for `simplified` than for the model whose `_digests` are
    `before`: its new constants less the weights no graph holds any more."""
    after = _digests(simplified)
    freed = before - after - elsewhere
    return max(sum(t[-1] for t in after - before) - sum(t[-1] for t in freed), 0)
