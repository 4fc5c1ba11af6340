"""ONNX float32 -> INT8 (static Q/DQ), FP16, dynamic INT8, or INT8/float mixed under a budget.

`int8` quantizes every node ONNX Runtime can (the naive baseline); `mixed` keeps the groups an
audio metric finds most harmful in float until the quality budget holds on held-out calibration
data; `fp16` halves the weights; `dynamic` suits MatMul-heavy graphs. Every result records its
quality against its parent on the run's data, and an unmet budget fails the stage.
"""

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import onnx
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator

from speedy.artifact import Artifact
from speedy.audio.cache import FeatureCache, default_cache_dir
from speedy.console import console, notice
from speedy.errors import SpeedyError
from speedy.onnx_io import load_onnx, save_onnx
from speedy.quality import METRICS, Budget, parse_budget
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
from speedy.quantize.graph import Granularity, GraphInfo, analyze, quantized_reason
from speedy.quantize.metrics import budgets_for, unmet
from speedy.quantize.plan import plan_mixed, table
from speedy.quantize.qdq import preprocess, quantize_qdq
from speedy.quantize.ranges import Method, activation_ranges
from speedy.quantize.report import quality_report
from speedy.quantize.scoring import Scorer
from speedy.stages.base import Draft, Stage, StageContext

Precision = Literal["int8", "fp16", "mixed", "dynamic"]
MODEL_FILE = "model.onnx"
MANIFEST_PRECISION = {
    "int8": "int8",
    "mixed": "int8+fp32",
    "fp16": "fp16",
    "dynamic": "int8-dynamic",
}
CONV_HEAVY = 0.5  # share of MACs in convolutions above which dynamic INT8 is slow on CPU


class QualityBudgetError(SpeedyError):
    """The quantized artifact misses the quality budget on the run's data."""


class QuantizeOptions(BaseModel):
    """Precision, calibration data and method, quality budget and search settings."""

    model_config = ConfigDict(extra="forbid")

    precision: Precision = "mixed"
    calib: str = "default"  # directory or file of examples, a named set, or `default`
    method: Method = "mse"
    calib_size: PositiveInt = 16  # calibration crops
    per_channel: bool = True
    budget: str | None = None  # e.g. "pesq>=4.0,mel<=0.2"; mixed: the family's default
    granularity: Granularity = "block"
    crop: dict[str, PositiveInt] = Field(default_factory=dict)  # default: half of each dim's opt
    probes: PositiveInt = 4  # held-out crops that score candidates (mixed)
    holdout_every: int = Field(4, ge=2)  # every Nth calibration example is held out (mixed)
    rank_by: str = "mel"  # the metric sensitivities are ranked by
    min_share: float = Field(0.01, ge=0, lt=1)  # mixed: smaller groups stay float, unmeasured
    keep_float: list[str] = Field(default_factory=list)  # groups, nodes or op types
    weight_only: bool = True  # float layers keep int8 weights (DequantizeLinear -> float op)

    @field_validator("budget")
    @classmethod
    def _budget(cls, value: str | None) -> str | None:
        if value is not None:
            parse_budget(value)  # raises a SpeedyError naming the bad term or metric
        return value

    @field_validator("rank_by")
    @classmethod
    def _rank_by(cls, value: str) -> str:
        if value not in METRICS:
            raise ValueError(f"unknown metric {value!r}, use one of {', '.join(METRICS)}")
        return value


def check_float_parent(parent: Artifact | None) -> Artifact:
    """The parent, if it is a float32 ONNX artifact; a clear error otherwise."""
    if parent is None or parent.manifest.kind != "onnx":
        raise SpeedyError("quantize needs an ONNX artifact", "run `speedy export` first")
    reason = quantized_reason(load_onnx(parent.model_file, with_weights=False))
    if parent.manifest.precision != "fp32" or reason:
        raise SpeedyError(
            f"{parent.path} is already quantized "
            f"({reason or f'its precision is {parent.manifest.precision}'})",
            "quantize the float32 artifact it was made from (`speedy inspect` shows its lineage)",
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
        for path in source_files(self.options.calib, parent.manifest.model):
            combined.update(path.read_bytes())
        return "sha256:" + combined.hexdigest()

    def budgets(self, ctx: StageContext) -> list[Budget]:
        """The quality budget (for `mixed`, the family's default when none is given)."""
        o = self.options
        return budgets_for(o.budget, ctx.spec.adapter(), required=o.precision == "mixed")

    def build(self, parent: Artifact | None, workdir: Path, ctx: StageContext) -> Draft:
        parent = check_float_parent(parent)
        o = self.options
        self.budgets(ctx)  # a bad budget fails before any work
        out = workdir / MODEL_FILE
        if o.precision == "fp16":
            model = load_onnx(parent.model_file)
            blocked = self._fp16_blocked(model, ctx)
            save_onnx(to_fp16(model, blocked), out)
            report: dict[str, Any] = {"keep_float": o.keep_float, "float32_nodes_or_ops": blocked}
        else:
            with tempfile.TemporaryDirectory(prefix="speedy-quantize-") as tmp:
                report = self._quantize(parent, Path(tmp), out, ctx)
        report |= {"precision": o.precision, "size_ratio": out.stat().st_size / parent.size_bytes}
        return Draft(
            kind="onnx",
            files=[MODEL_FILE],
            precision=MANIFEST_PRECISION[o.precision],
            reports={"quantize": report},
        )

    def _fp16_blocked(self, model: onnx.ModelProto, ctx: StageContext) -> list[str]:
        """`keep_float` as op types and node names (a group, or a node of it, blocks the group)."""
        op_types = {n.op_type for n in model.graph.node}
        names = [n for n in self.options.keep_float if n not in op_types]
        if not names:
            return list(self.options.keep_float)
        info = analyze(model, ctx.spec.sizes(), self.options.granularity)
        nodes = {n for group in kept_groups(info, names) for n in info.members[group]}
        return [*(n for n in self.options.keep_float if n in op_types), *sorted(nodes)]

    def _quantize(self, parent: Artifact, tmp: Path, out: Path, ctx: StageContext) -> dict:
        o, float_model = self.options, tmp / "float.onnx"
        info = analyze(preprocess(parent.model_file, float_model), ctx.spec.sizes(), o.granularity)
        kept = kept_groups(info, o.keep_float)
        exclude = [node for group in kept for node in info.members[group]]
        if o.precision == "dynamic":
            _warn_conv_heavy(info)
            quantize_dynamic_int8(float_model, out, o.per_channel, exclude)
            return {"table": table(info, kept, weight_only=False)}
        setup = self.calibrate(parent, float_model, info, ctx)
        report: dict[str, Any] = {"calibration": setup.describe(), "granularity": o.granularity}
        if o.precision == "int8":
            quantize_qdq(
                float_model, out, setup.builder.ranges, o.method, None, o.per_channel, exclude
            )
            return report | {"table": table(info, kept, weight_only=False)}
        return report | self._mixed(setup.builder, kept, setup.probes, parent, tmp, out, ctx)

    def calibrate(
        self, parent: Artifact, float_model: Path, info: GraphInfo, ctx: StageContext
    ) -> Calibrated:
        """Read the calibration source, cut crops (and, for mixed, held-out probes), find the
        activation ranges, and set up the candidate builder for `float_model`."""
        o = self.options
        cache = FeatureCache(default_cache_dir())
        calibration = load_calibration(o.calib, ctx.spec, cache)
        console.print(cache.summary())
        count = len(calibration.examples)
        mixed = o.precision == "mixed"
        calib_ids, probe_ids = split(count, o.holdout_every) if mixed else (list(range(count)), [])
        sizes = crop_sizes(parent.manifest, o.crop)
        crops = _crops(calibration, calib_ids, parent, sizes, o.calib_size)
        probes = _crops(calibration, probe_ids, parent, sizes, o.probes) if mixed else []
        ranges = activation_ranges(float_model, crops, o.method, default_cache_dir())
        builder = Builder(float_model, ranges, o.method, info, o.per_channel, o.weight_only)
        return Calibrated(calibration, o.method, sizes, crops, probes, builder)

    def _mixed(
        self,
        builder: Builder,
        kept: set[str],
        probes: list[Crop],
        parent: Artifact,
        tmp: Path,
        out: Path,
        ctx: StageContext,
    ) -> dict[str, Any]:
        o, info = self.options, builder.info
        budgets = self.budgets(ctx)
        unfused = builder.find_unfused(tmp / "candidate.onnx")
        if unfused:
            ops = sorted({layer.op_type for layer in info.layers if layer.node in unfused})
            notice(
                f"ONNX Runtime's CPU provider has no int8 kernel for {len(unfused)} layer(s) "
                f"({', '.join(ops)}): they keep float activations (weights stay int8)"
            )
        small = {g for g in info.groups if info.share(g) < o.min_share} - kept
        if small:
            console.print(
                f"{len(small)} group(s) under {o.min_share:.1%} of the MACs stay float: "
                + ", ".join(g for g in info.groups if g in small)
            )
        metrics = [o.rank_by, *(b.metric for b in budgets)]
        scorer = Scorer(parent.manifest, builder.model, probes, metrics, ctx.threads)
        plan = plan_mixed(builder, scorer, budgets, o.rank_by, kept | small, tmp)
        builder.build([g for g in info.groups if g not in plan.floats], out)
        return {
            "budget": [str(b) for b in budgets],
            "rank_by": o.rank_by,
            "unfused_layers": sorted(unfused),
            "small_groups": sorted(small),
            "float_groups": sorted(plan.floats),
            "float_mac_share": sum(info.share(g) for g in plan.floats),
            "search": [vars(e) for e in plan.tried],
            "table": table(info, plan.floats, plan.sensitivities, unfused, o.weight_only),
        }

    def validate(self, parent: Artifact | None, artifact: Artifact, ctx: StageContext) -> dict:
        assert parent is not None
        report = quality_report(parent, artifact, ctx)
        calibration = artifact.manifest.reports["quantize"].get("calibration", {})
        seen = set(calibration.get("example_digests", []))
        report["calibration_overlap"] = sum(example_digest(e) in seen for e in ctx.features)
        if report["calibration_overlap"]:
            notice(
                f"{report['calibration_overlap']} of the {report['examples']} examples the quality "
                "was measured on are calibration examples: pass --data with other clips for a "
                "held-out figure"
            )
        if missed := unmet(self.budgets(ctx), report["metrics"]):
            raise QualityBudgetError(
                f"quantized model misses the quality budget on {report['examples']} examples: "
                + "; ".join(missed),
                "relax --budget, keep more layers in float (--precision mixed, --keep-float), "
                "add calibration data, or use --precision fp16",
            )
        return {"quality": report}


def _crops(
    calibration: Calibration, ids: list[int], parent: Artifact, sizes: dict, count: int
) -> list[Crop]:
    return select_crops(
        [calibration.names[i] for i in ids],
        [calibration.examples[i] for i in ids],
        parent.manifest,
        sizes,
        count,
    )


def _warn_conv_heavy(info: GraphInfo) -> None:
    total = sum(layer.macs for layer in info.layers) or 1
    conv = sum(layer.macs for layer in info.layers if layer.op_type.startswith("Conv")) / total
    if conv > CONV_HEAVY:
        notice(
            f"{conv:.0%} of the MACs are convolutions: dynamic INT8 runs them as ConvInteger, "
            "usually slower than float on CPU; --precision int8 or mixed is faster"
        )
