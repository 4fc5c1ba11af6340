"""ONNX float32 -> INT8 (static Q/DQ), FP16, dynamic INT8, 4-bit weights, or INT8/float mixed
under a budget.

`int8` quantizes every node ONNX Runtime can (the naive baseline); `mixed` keeps the groups the
task's metric finds most harmful in float until the quality budget holds on held-out calibration
data; `fp16` halves the weights; `dynamic` suits MatMul-heavy graphs; `int4` stores MatMul
weights in 4 bits (MatMulNBits: a transformer's decode reads an eighth of the bytes). A model of
several graphs is quantized graph by graph (`--graph` picks some; the others stay as they are),
each calibrated on what it receives when the float model runs the calibration examples. Every
result records its quality against its parent on the run's data, end to end, in the task's
metrics and those of its budget (`--budget`, else the task's default); an unmet budget fails the
stage unless `no_budget` keeps it. Layers of fixed transforms (DFT bases) stay float32 in every
precision.
"""

import hashlib
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, ClassVar

import onnx

from speedy import runtime
from speedy.artifact import Artifact
from speedy.audio.cache import FeatureCache, default_cache_dir
from speedy.audio.io import nonfinite
from speedy.backends.ort.session import OnnxSession
from speedy.console import console, notice
from speedy.errors import SpeedyError
from speedy.onnx_io import load_onnx, model_bytes, save_onnx
from speedy.quality import Budget
from speedy.quantize.calibration import (
    Calibration,
    example_digest,
    load_calibration,
    source_files,
)
from speedy.quantize.candidates import Builder
from speedy.quantize.crops import Crop, crop_sizes, select_crops
from speedy.quantize.dynamic import quantize_dynamic_int8
from speedy.quantize.fp16 import to_fp16
from speedy.quantize.graph import (
    GraphInfo,
    analyze,
    fixed_layers,
    quantized_reason,
    unquantizable,
)
from speedy.quantize.metrics import unmet
from speedy.quantize.mixed import Evaluation
from speedy.quantize.nbits import quantize_matmul_4bits
from speedy.quantize.plan import Plan, plan_mixed, table
from speedy.quantize.qdq import preprocess, quantize_qdq
from speedy.quantize.ranges import activation_ranges
from speedy.quantize.report import quality_report
from speedy.quantize.scoring import Scorer
from speedy.quantize.tails import size_nodes, tail_nodes, without
from speedy.quantize.twin import OVERLAPPED, WholeGraph
from speedy.quantize.weight_only import EVERY_LAYER_AXIS, store_weights
from speedy.runtime import Model
from speedy.scratch import scratch
from speedy.stages.base import (
    Draft,
    Stage,
    StageContext,
    carry_over,
    check_kind,
    selected_graphs,
)
from speedy.stages.options import Method, QuantizeOptions
from speedy.tasks import Task, graph_feeds, task_for

INT8_WEIGHTS = "int8-weights"  # a streaming pair's precision (`exact_stream`)
MANIFEST_PRECISION = {
    "int8": "int8",
    "mixed": "int8+fp32",
    "fp16": "fp16",
    "dynamic": "int8-dynamic",
    "int4": "int4-weights",
    INT8_WEIGHTS: INT8_WEIGHTS,
}
CONV_HEAVY = 0.5  # share of MACs in convolutions above which dynamic INT8 is slow on CPU


class QualityBudgetError(SpeedyError):
    """The quantized artifact misses the quality budget on the run's data."""


def check_finite_outputs(parent: Model, ctx: StageContext) -> None:
    """Refuse a parent that computes NaN or infinite outputs on the run's data (a NaN weight, an
    overflow): no INT8 scale holds them, and no quality can be measured against them."""
    outputs = ctx.task.run(parent, ctx.task.sized_inputs(ctx.examples, ctx.spec.sizes()))
    if bad := next((name for name, value in outputs.items() if nonfinite(value)), None):
        raise SpeedyError(
            f"the parent's output '{bad}' holds {nonfinite(outputs[bad])} NaN or infinite "
            "value(s) on the run's data",
            "check the parent (its weights, `speedy infer` on an example) and quantize a parent "
            "whose outputs are finite",
        )


def float_nodes(model: onnx.ModelProto, task: Task, graph: str) -> dict[str, list[str]]:
    """The nodes every precision keeps float32, weights included: the task's float tail, the
    layers of fixed transforms (the DFT bases of the istft rewrite), and size arithmetic."""
    return {
        "float_tail": sorted(tail_nodes(model, task.float_tails(graph))),
        "fixed_float": sorted(fixed_layers(model)),
        "size_math": sorted(size_nodes(model)),
    }


def check_float_parent(parent: Artifact | None, graphs: list[str]) -> Artifact:
    """The parent, if its `graphs` are float32 ONNX; a clear error otherwise."""
    parent = check_kind(parent, "onnx", "quantize", "run `speedy export` first", graphs)
    for name in graphs:
        entry = parent.manifest.graphs[name]
        reason = quantized_reason(load_onnx(parent.file(name), with_weights=False))
        if entry.precision != "fp32" or reason:
            raise SpeedyError(
                f"{parent.path} is already quantized "
                f"({reason or f'its precision is {entry.precision}'})",
                "quantize the float32 artifact it was made from (`speedy inspect` shows its "
                "lineage)",
            )
    return parent


def split(count: int, every: int) -> tuple[list[int], list[int]]:
    """Indices of calibration examples and of held-out ones (every `every`-th, at least one)."""
    held = [i for i in range(count) if i % every == every - 1] or [count - 1]
    if count < 2:
        raise SpeedyError(
            "mixed precision needs at least 2 calibration examples (some are held out to score "
            "candidates)",
            "add examples to the calibration source",
        )
    return [i for i in range(count) if i not in held], held


def kept_groups(info: GraphInfo, names: list[str]) -> set[str]:
    """Groups named, holding nodes named, or holding layers of an op type named in `keep_float`
    (with `granularity: node`, `Conv` keeps exactly the convolutions float)."""
    group_of = {node: group for group, nodes in info.members.items() for node in nodes}
    by_op: dict[str, set[str]] = {}
    for layer in info.layers:
        by_op.setdefault(layer.op_type, set()).add(layer.group)
    if unknown := [n for n in names if n not in {*info.members, *group_of, *by_op}]:
        raise SpeedyError(
            f"--keep-float names no group, node or layer op type: {', '.join(unknown)}",
            f"use group names such as {', '.join(info.groups[:4])} (see `speedy inspect`) "
            f"or op types of this graph's layers ({', '.join(sorted(by_op))})",
        )
    kept: set[str] = set()
    for name in names:
        kept |= by_op.get(name) or {name if name in info.members else group_of[name]}
    return kept


def kept_nodes(info: GraphInfo, names: list[str]) -> set[str]:
    """The nodes of the groups `kept_groups` finds for `names`."""
    return {node for group in kept_groups(info, names) for node in info.members[group]}


@dataclass
class Calibrated:
    """A calibration source read and cut, with its activation ranges and candidate builder."""

    calibration: Calibration
    method: Method
    sizes: dict[str, int]
    crops: list[Crop]
    probes: list[Crop]
    builder: Builder

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.calibration.source,
            "digest": self.calibration.digest,
            "method": self.method,
            "crop_sizes": self.sizes,
            "crops": [c.name for c in self.crops],
            "probes": [p.name for p in self.probes],
            "example_digests": self.calibration.example_digests(),
        }


class QuantizeStage(Stage):
    """ONNX float32 artifact -> reduced-precision ONNX artifact with a quality report."""

    name: ClassVar[str] = "quantize"
    options: QuantizeOptions

    def source_digest(self, parent: Artifact | None) -> str | None:
        """The parent's digest, and the calibration files' when calibration is used."""
        digest = super().source_digest(parent)
        if parent is None or self.options.precision not in ("int8", "mixed"):
            return digest
        combined = hashlib.sha256(str(digest).encode())
        task = task_for(parent.manifest.model)
        for path in source_files(self.options.calib, task):
            combined.update(path.read_bytes())
        return "sha256:" + combined.hexdigest()

    def budgets(self, task: Task) -> list[Budget]:
        """The quality budget: the one given, else the task's default; none with `no_budget`."""
        return [] if self.options.no_budget else task.budgets(self.options.budget)

    def rank_by(self, task: Task) -> tuple[str, bool]:
        """The metric sensitivities are ranked by, and whether higher is better."""
        metric = self.options.rank_by or task.rank_by
        if metric not in task.metrics:
            raise SpeedyError(
                f"--rank-by {metric}: a {task.name} model's quality is not measured by it",
                f"use one of: {', '.join(task.metrics)}",
            )
        return metric, task.metrics[metric]

    def build(self, parent: Artifact | None, workdir: Path, ctx: StageContext) -> Draft:
        o = self.options
        chosen = selected_graphs(o, parent) if parent else []
        parent = check_float_parent(parent, chosen)
        self.budgets(ctx.task)  # a bad budget or ranking metric fails before any work
        self.rank_by(ctx.task)
        others = [g for g in parent.manifest.graphs if g not in chosen]
        graphs = carry_over(parent, workdir, others)
        model = runtime.load(parent.path, threads=ctx.threads, verify=False)
        check_finite_outputs(model, ctx)
        reports: dict[str, Any] = {}
        wholes: dict[str, WholeGraph] = {}  # of the steps quantized here, their whole graphs'
        steps = {w: g for g in chosen if (w := ctx.task.twin_of(g)) in chosen}
        exact = {*steps, *steps.values()} if o.exact_stream and o.precision != "fp16" else set()
        if exact:
            notice(
                f"{' and '.join(sorted(exact))} stream: they keep float activations and store "
                "int8 weights, so the stream equals the whole decode (--no-exact-stream "
                f"rounds their activations as {o.precision}: faster, but the stream drifts)"
            )
        for name in sorted(chosen, key=lambda g: g in steps.values()):  # wholes before steps
            entry = parent.manifest.graphs[name]
            out = workdir / entry.file
            if name in exact:
                report = self._int8_weights(model, name, out, ctx)
            elif o.precision == "fp16":
                source = load_onnx(parent.file(name))
                blocked = self._fp16_blocked(source, ctx)
                floats = float_nodes(source, ctx.task, name)
                save_onnx(to_fp16(source, [*blocked, *chain(*floats.values())]), out)
                report: dict[str, Any] = floats | {
                    "keep_float": o.keep_float,
                    "float32_nodes_or_ops": blocked,
                }
            else:
                with scratch("quantize") as tmp:
                    report = self._quantize(model, name, tmp, out, ctx, wholes, name in steps)
            files = [f.name for f in (out, out.with_name(out.name + ".data")) if f.is_file()]
            size_ratio = model_bytes(out) / model_bytes(parent.file(name))
            chosen_precision = INT8_WEIGHTS if name in exact else o.precision
            report |= {"precision": chosen_precision, "size_ratio": size_ratio}
            precision = MANIFEST_PRECISION[chosen_precision]
            graphs[name] = entry.model_copy(update={"files": files, "precision": precision})
            reports[name] = report
        ordered = {name: graphs[name] for name in parent.manifest.graphs}
        return Draft(ordered, reports={"quantize": reports})

    def _int8_weights(self, model: Model, name: str, out: Path, ctx: StageContext) -> dict:
        """Graph `name` with float activations and its layers' weights (but those kept float)
        stored as int8 per output channel: it computes in float as it did, on any chunk."""
        source = load_onnx(model.artifact.file(name))
        floats = float_nodes(source, ctx.task, name)
        info = analyze(source, ctx.spec.sizes(), self.options.granularity)
        kept = kept_nodes(info, self.options.keep_float) | set(chain(*floats.values()))
        layers = [layer.node for layer in info.layers if layer.node not in kept]
        stored = store_weights(source, layers, "int8", EVERY_LAYER_AXIS)
        save_onnx(source, out)
        return floats | {"int8_weight_layers": stored, "layers": len(info.layers)}

    def _fp16_blocked(self, model: onnx.ModelProto, ctx: StageContext) -> list[str]:
        """`keep_float` as op types and node names (a group, or a node of it, blocks the group)."""
        op_types = {n.op_type for n in model.graph.node}
        names = [n for n in self.options.keep_float if n not in op_types]
        if not names:
            return list(self.options.keep_float)
        info = analyze(model, ctx.spec.sizes(), self.options.granularity)
        nodes = kept_nodes(info, names)
        return [*(n for n in self.options.keep_float if n in op_types), *sorted(nodes)]

    def _quantize(
        self,
        model: Model,
        name: str,
        tmp: Path,
        out: Path,
        ctx: StageContext,
        wholes: dict[str, WholeGraph],
        has_step: bool,
    ) -> dict:
        """Graph `name` quantized into `out`; static INT8 of a streaming step graph follows its
        whole graph (in `wholes`), and a whole graph whose step is quantized too (`has_step`)
        quantizes its weighted layers only, and is recorded there."""
        o, float_model = self.options, tmp / "float.onnx"
        source = model.artifact.file(name)
        processed = preprocess(source, float_model)
        floats = float_nodes(processed, ctx.task, name)
        always = list(chain(*floats.values()))
        typical = ctx.task.sized_inputs(ctx.examples, ctx.spec.sizes())
        (feeds,) = graph_feeds(ctx.task, model, typical, limit=1)[name]
        info = without(analyze(processed, ctx.spec.sizes(), o.granularity, feeds), always)
        kept = kept_groups(info, o.keep_float)
        if reason := unquantizable(processed, info, kept):
            raise SpeedyError(
                f"--precision {o.precision} would change no compute node of graph {name}: {reason}",
                "use --precision fp16, or keep fewer layers float",
            )
        exclude = [node for group in kept for node in info.members[group]] + always
        if o.precision == "dynamic":
            _warn_conv_heavy(info)
            quantize_dynamic_int8(float_model, out, o.per_channel, exclude)
            return floats | {"table": table(info, kept, float_weights="fp32")}
        if o.precision == "int4":
            quantize_matmul_4bits(float_model, out, exclude)
            return floats | {"table": table(info, kept, float_weights="fp32", quantized="int4")}
        if (twin_of := ctx.task.twin_of(name)) in wholes:
            whole = wholes[twin_of]
            twins = whole.twins(processed, info.layers)
            nodes = [n for n, theirs in twins.items() if theirs in whole.quantized]
            ranges = whole.step_ranges(processed, twins, tmp / "ranges.json")
            quantize_qdq(
                float_model, out, ranges, o.method, nodes, o.per_channel, exclude, OVERLAPPED
            )
            return floats | {
                "twin_of": twin_of,
                "twin_layers": len(nodes),
                "layers": len(info.layers),
            }
        setup = self.calibrate(model, name, float_model, info, ctx)
        report: dict[str, Any] = floats | {
            "calibration": setup.describe(),
            "granularity": o.granularity,
        }
        if o.precision == "int8":
            ranges, nodes = setup.builder.ranges, None
            if has_step:
                nodes = [layer.node for layer in info.layers if layer.node not in exclude]
                wholes[name] = WholeGraph.of(processed, info.layers, ranges, nodes)
            overlapped = OVERLAPPED if has_step else ()
            quantize_qdq(
                float_model, out, ranges, o.method, nodes, o.per_channel, exclude, overlapped
            )
            return report | {"table": table(info, kept, float_weights="fp32")}
        return report | self._mixed(setup, kept, model, name, tmp, out, ctx)

    def calibrate(
        self, model: Model, name: str, float_model: Path, info: GraphInfo, ctx: StageContext
    ) -> "Calibrated":
        """Read the calibration source, cut crops of what graph `name` is fed (and, for mixed,
        held-out probes of the task's inputs), find the activation ranges, and set up the
        candidate builder for `float_model`."""
        o, task, dims = self.options, ctx.task, ctx.spec.dims
        cache = FeatureCache(default_cache_dir())
        calibration = load_calibration(o.calib, task, cache)
        console.print(cache.summary())
        count = len(calibration.examples)
        mixed = o.precision == "mixed"
        calib_ids, probe_ids = split(count, o.holdout_every) if mixed else (list(range(count)), [])
        sizes = crop_sizes(dims, o.crop, task.crop_dims)
        fed = [
            (f"{calibration.names[i]}" + (f"@{k}" if k else ""), feeds)
            for i in calib_ids
            for k, feeds in enumerate(
                graph_feeds(task, model, task.inputs(calibration.examples[i]))[name]
            )
        ]
        crops = select_crops(fed, model[name].inputs, dims, sizes, o.calib_size)
        probes = []
        if mixed:
            held = [(calibration.names[i], task.inputs(calibration.examples[i])) for i in probe_ids]
            specs = [s for g in model.graphs for s in model[g].inputs]
            probes = select_crops(held, specs, None, sizes, o.probes)
        ranges = activation_ranges(float_model, crops, o.method, default_cache_dir())
        builder = Builder(float_model, ranges, o.method, info, o.per_channel, o.float_weights)
        return Calibrated(calibration, o.method, sizes, crops, probes, builder)

    def _mixed(
        self,
        setup: "Calibrated",
        kept: set[str],
        model: Model,
        name: str,
        tmp: Path,
        out: Path,
        ctx: StageContext,
    ) -> dict[str, Any]:
        o, builder = self.options, setup.builder
        info, budgets, rank_by = builder.info, self.budgets(ctx.task), self.rank_by(ctx.task)
        unfused = builder.find_unfused(tmp / "candidate.onnx")
        if unfused:
            ops = sorted({layer.op_type for layer in info.layers if layer.node in unfused})
            notice(
                f"ONNX Runtime's CPU provider has no int8 kernel for {len(unfused)} layer(s) "
                f"({', '.join(ops)}): they keep float activations ({o.float_weights} weights)"
            )
        small = {g for g in info.groups if info.share(g) < o.min_share} - kept
        if small:
            console.print(
                f"{len(small)} group(s) under {o.min_share:.1%} of the MACs stay float: "
                + ", ".join(g for g in info.groups if g in small)
            )
        metrics = [rank_by[0], *(b.metric for b in budgets)]
        graph = model[name]
        reference = model.replaced(
            name, OnnxSession(name, graph.graph, builder.model, graph.dims, threads=ctx.threads)
        )
        plan = stored = self._stored(builder, reference, name, budgets, kept | small, tmp, ctx)
        if plan is None:
            scorer = Scorer(ctx.task, reference, name, setup.probes, metrics, ctx.threads)
            plan = plan_mixed(builder, scorer, budgets, rank_by, kept | small, tmp)
        builder.build([g for g in info.groups if g not in plan.floats], out)
        return {
            "plan": "stored" if stored else "searched",
            "budget": [str(b) for b in budgets],
            "rank_by": rank_by[0],
            "unfused_layers": sorted(unfused),
            "small_groups": sorted(small),
            "float_groups": sorted(plan.floats),
            "float_mac_share": sum(info.share(g) for g in plan.floats),
            "search": [vars(e) for e in plan.tried],
            "table": table(info, plan.floats, plan.sensitivities, unfused, o.float_weights),
        }

    def _stored(
        self,
        builder: Builder,
        reference: Model,
        name: str,
        budgets: list[Budget],
        floats: set[str],
        tmp: Path,
        ctx: StageContext,
    ) -> Plan | None:
        """The stored plan (its float groups and `floats`), built and checked against the budget
        on the run's examples; None, with a notice, where the search must run instead: no plan
        (or --search), one found under another budget or naming groups this graph lacks, or one
        that misses the budget here."""
        o, info = self.options, builder.info
        if o.plan is None or o.search:
            return None
        found_under = [str(b) for b in ctx.task.budgets(o.plan.budget)]
        if found_under != [str(b) for b in budgets]:
            notice(f"the stored plan met {o.plan.budget}, this run asks {budgets}: searching")
            return None
        if unknown := sorted(set(o.plan.float_groups) - set(info.groups)):
            notice(
                f"the stored plan names groups this graph lacks ({', '.join(unknown)}): searching"
            )
            return None
        chosen = {*o.plan.float_groups, *floats}
        candidate = builder.build([g for g in info.groups if g not in chosen], tmp / "plan.onnx")
        examples = [Crop(f"example {i}", ctx.task.inputs(e)) for i, e in enumerate(ctx.examples)]
        metrics = [b.metric for b in budgets]
        scores = Scorer(ctx.task, reference, name, examples, metrics, ctx.threads).score(candidate)
        figures = ", ".join(f"{k} {v:.3f}" for k, v in scores.items() if v is not None)
        if missed := unmet(budgets, scores):
            notice(f"the stored plan misses the budget here ({'; '.join(missed)}): searching")
            return None
        console.print(f"  stored plan ({len(chosen)} groups float): {figures} on the run's data")
        share = sum(info.share(g) for g in chosen)
        return Plan(chosen, [], [Evaluation(sorted(chosen), share, scores, True)])

    def validate(self, parent: Artifact | None, artifact: Artifact, ctx: StageContext) -> dict:
        assert parent is not None
        report = quality_report(parent, artifact, ctx, self.budgets(ctx.task))
        seen = {
            digest
            for graph in (artifact.manifest.typed_reports().quantize or {}).values()
            if graph.calibration is not None
            for digest in graph.calibration.example_digests
        }
        report["calibration_overlap"] = sum(example_digest(e) in seen for e in ctx.examples)
        if report["calibration_overlap"]:
            notice(
                f"{report['calibration_overlap']} of the {report['examples']} examples the quality "
                "was measured on are calibration examples: pass --data with other clips for a "
                "held-out figure"
            )
        if missed := unmet(self.budgets(ctx.task), report["metrics"]):
            raise QualityBudgetError(
                f"quantized model misses the quality budget on {report['examples']} examples: "
                + "; ".join(missed),
                "relax --budget, keep more layers in float (--precision mixed, --keep-float), "
                "add calibration data, use --precision fp16, or keep it anyway with --no-budget",
            )
        return {"quality": report}


def _warn_conv_heavy(info: GraphInfo) -> None:
    total = sum(layer.macs for layer in info.layers) or 1
    conv = sum(layer.macs for layer in info.layers if layer.op_type.startswith("Conv")) / total
    if conv > CONV_HEAVY:
        notice(
            f"{conv:.0%} of the MACs are convolutions: dynamic INT8 runs them as ConvInteger, "
            "usually slower than float on CPU; --precision int8 or mixed is faster"
        )
