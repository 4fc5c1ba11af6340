"""Compile an artifact's graphs for a runtime: TensorRT engines, ORT-optimized ONNX, AOTInductor.

Profiles for dynamic dims come from the lengths each graph receives when the parent runs real
utterances (see compile/profiles.py); each compiled graph records the typed runtime section its
backend needs, and the result is checked against its parent on the same real inputs like every
other stage. `--graph` compiles some graphs and leaves the others as they are.
"""

import hashlib
from pathlib import Path
from typing import Any, ClassVar

from speedy import runtime
from speedy.artifact import Artifact, GraphEntry, file_digest
from speedy.audio.cache import FeatureCache, default_cache_dir
from speedy.backends.aoti.build import compile_package, trace_sizes
from speedy.backends.ort import build as ort_build
from speedy.backends.ort.section import OrtSection
from speedy.backends.trt.section import TrtSection
from speedy.backends.trt.session import import_tensorrt
from speedy.compile.fft_conv import FftConvOptions, fft_convolutions
from speedy.compile.precision import require_qdq, to_fp16
from speedy.compile.profiles import (
    coverage_report,
    data_lengths,
    derive_profiles,
    parse_shapes,
)
from speedy.console import console
from speedy.data_source import data_files
from speedy.devices import require_cuda
from speedy.model_spec import ModelSpec, ParityOptions
from speedy.onnx_io import load_onnx, save_onnx
from speedy.parity import PARITY_FIX, check
from speedy.scratch import scratch
from speedy.shapes import PROFILES, Profile, describe, fits
from speedy.stages.base import Draft, Stage, StageContext, carry_over, check_kind, selected_graphs
from speedy.stages.options import CompileOptions
from speedy.tasks import graph_feeds

SUFFIX: dict[str, str] = {"trt": ".engine", "ort": ".onnx", "aoti": ".pt2"}
PARENT_KIND: dict[str, str] = {"trt": "onnx", "ort": "onnx", "aoti": "torch"}
RESULT_KIND: dict[str, str] = {"trt": "trt", "ort": "onnx", "aoti": "aoti"}
# Largest allowed error against the parent when precision drops (fp32 keeps the recipe's atol).
REDUCED_ATOL = {"fp16": 1e-2, "int8": 1e-1}


def reduced_atol(precision: str) -> float | None:
    """The parity tolerance of a reduced precision (fp16, int8...); None for fp32."""
    return next((atol for kind, atol in REDUCED_ATOL.items() if precision.startswith(kind)), None)


class CompileStage(Stage):
    """ONNX -> TensorRT engine or ORT-optimized ONNX; torch -> AOTInductor package."""

    name: ClassVar[str] = "compile"
    options: CompileOptions

    def __init__(self, options: CompileOptions) -> None:
        super().__init__(options)
        if options.backend == "trt":
            import_tensorrt()  # fail before any work when TensorRT is missing
        if options.backend == "aoti" and options.device == "cuda":
            require_cuda()

    def fingerprint(self, parent: Artifact | None, spec: ModelSpec) -> str:
        """Also changes with the contents of --profiles-from (the profiles depend on them)."""
        key = super().fingerprint(parent, spec)
        if self.options.profiles_from is None:
            return key
        key += file_digest(data_files(self.options.profiles_from))
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()

    def precision(self, entry: GraphEntry) -> str:
        """A graph's precision (int8 when --int8), with its float parts in FP16 if --fp16."""
        precision = entry.precision
        if self.options.int8 and not precision.startswith("int8"):
            precision = "int8"
        if self.options.fp16:
            precision = "int8+fp16" if precision.startswith("int8") else "fp16"
        return precision

    def build(self, parent: Artifact | None, workdir: Path, ctx: StageContext) -> Draft:
        o = self.options
        needed = PARENT_KIND[o.backend]
        fix = (
            "pass the torch artifact (build/<recipe>/torch); in a recipe: stages: [compile]"
            if needed == "torch"
            else "pass an ONNX artifact (from export, simplify or quantize)"
        )
        chosen = selected_graphs(o, parent) if parent else []
        parent = check_kind(parent, needed, f"--backend {o.backend}", fix, chosen)
        graphs = carry_over(parent, workdir, [g for g in parent.manifest.graphs if g not in chosen])
        reports: dict[str, Any] = {}
        fed = self._fed(parent, ctx) if o.backend != "aoti" else {}
        network = None
        for name in chosen:
            entry = parent.manifest.graphs[name]
            report: dict[str, Any] = {"backend": o.backend, "device": o.target}
            if o.int8:
                report["qdq_nodes"] = require_qdq(parent.file(name))
            target = workdir / f"{name}{SUFFIX[o.backend]}"
            if o.backend == "aoti":
                network, section = self._aoti(parent, name, target, ctx, network)
                files = [target.name]
            else:
                profiles, profile_report = self._profiles(entry, fed[name], ctx)
                report |= {"profiles": PROFILES.dump_python(profiles, mode="json")}
                report |= profile_report
                for profile in profiles:
                    console.print(
                        f"  profile{f' ({name})' if len(chosen) > 1 else ''}: {describe(profile)}"
                    )
                build = self._trt if o.backend == "trt" else self._ort
                files, section, built = build(parent.file(name), entry, target, profiles)
                report |= built
            graphs[name] = entry.model_copy(
                update={
                    "kind": RESULT_KIND[o.backend],
                    "files": files,
                    "precision": self.precision(entry),
                    "runtime": section,
                }
            )
            reports[name] = report
        ordered = {name: graphs[name] for name in parent.manifest.graphs}
        return Draft(ordered, reports={"compile": reports})

    def _fed(self, parent: Artifact, ctx: StageContext) -> dict[str, list]:
        """What each graph receives when the parent runs every utterance of the profile data."""
        o, task = self.options, ctx.task
        examples = ctx.examples
        if o.profiles_from is not None:
            examples = task.read_data(o.profiles_from, FeatureCache(default_cache_dir()))
        model = runtime.load(parent.path, threads=ctx.threads, verify=False)
        fed: dict[str, list] = {name: [] for name in model.graphs}
        for example in examples:
            for name, calls in graph_feeds(task, model, task.inputs(example)).items():
                fed[name] += calls
        return fed

    def _profiles(
        self, entry: GraphEntry, fed: list, ctx: StageContext
    ) -> tuple[list[Profile], dict]:
        o, dims = self.options, ctx.spec.dims
        overrides = parse_shapes(o.shapes, entry.inputs, dims)
        lengths = data_lengths(entry.inputs, fed)
        profiles = derive_profiles(
            entry.inputs, dims, lengths, overrides, o.max_seq_len, o.profile_span, o.max_profiles
        )
        if not lengths:  # fixed lengths (a scorer's): no data to cover, the ranges are the dims'
            return profiles, {}
        source = str(o.profiles_from) if o.profiles_from else "the run's data"
        return profiles, {"profile_data": {"source": source, **coverage_report(profiles, lengths)}}

    def _aoti(
        self, parent: Artifact, name: str, target: Path, ctx: StageContext, network: Any
    ) -> tuple[Any, Any]:
        from speedy.families import resolve
        from speedy.families.network import load_network

        spec, family = ctx.spec, resolve(ctx.spec)
        network = network or load_network(spec, parent.file(name))
        entry = parent.manifest.graphs[name]
        feeds = family.dummy_feeds(name, trace_sizes(spec.dims))
        module = family.graph_module(network, name)
        section = compile_package(
            module, entry.inputs, spec.dims, feeds, target, self.options.target, self.options.fp16
        )
        return network, section

    def _trt(
        self, source: Path, entry: GraphEntry, target: Path, profiles: list[Profile]
    ) -> tuple[list[str], TrtSection, dict]:
        from speedy.backends.trt.build import build_engine

        o = self.options
        engine, section, report = build_engine(
            source, entry.inputs, profiles, o.fp16, o.workspace_mb, o.timing_cache
        )
        target.write_bytes(engine)
        return [target.name], section, report

    def _ort(
        self, source: Path, entry: GraphEntry, target: Path, profiles: list[Profile]
    ) -> tuple[list[str], OrtSection, dict]:
        o, report = self.options, {}
        # with FFT convs, ORT folds their spectral weights when the session loads: folded
        # ahead of time, they would make the file about ten times larger
        level = "disable" if o.fft_conv else ort_build.offline_level(o.ort_level, o.providers)
        with scratch("compile") as tmp:
            if o.fp16:
                source = save_onnx(to_fp16(load_onnx(source)), tmp / "model.onnx")[0]
            if o.fft_conv:
                model, rewritten = fft_convolutions(load_onnx(source), FftConvOptions())
                source = save_onnx(model, tmp / "model.onnx")[0]
                report["fft_convs"] = rewritten
                console.print(f"  {len(rewritten)} convs as block FFT convolutions")
            files = ort_build.optimize(source, target, level)
        trt_options = ort_build.tensorrt_options(profiles, entry.inputs, o.int8, o.workspace_mb)
        settings = ort_build.settings_for(
            o.ort_level, level, o.providers, o.ort_threads, trt_options
        )
        report["offline_level"] = level
        uses_trt = "tensorrt" in o.providers
        section = OrtSection(settings=settings, profiles=profiles if uses_trt else [])
        return [f.name for f in files], section, report

    def validate(self, parent: Artifact | None, artifact: Artifact, ctx: StageContext) -> dict:
        assert parent is not None
        chosen = selected_graphs(self.options, parent)
        reference = runtime.load(parent.path, threads=ctx.threads, verify=False)
        candidate = runtime.load(  # built by this stage: its own code, trusted
            artifact.path, device=self.options.target, threads=ctx.threads, verify=False, trust=True
        )
        what = f"the {self.options.backend} artifact"
        precision = artifact.manifest.precision
        fix = (
            PARITY_FIX
            if reduced_atol(precision) is None
            else f"{precision} moves the output more than fp32 does: build it with --skip-parity, "
            "listen to it (speedy infer), and if it sounds right pass a wider --atol"
        )
        parity = self._parity(ctx.spec, artifact, chosen)
        return check(
            reference,
            candidate,
            ctx.task,
            ctx.examples,
            what,
            self.options.verify,
            fix,
            chosen,
            parity,
        )

    def _parity(self, spec: ModelSpec, artifact: Artifact, chosen: list[str]) -> ParityOptions:
        """The recipe's parity sizes (for TensorRT: those its profiles cover, plus each `opt`)
        at the tolerance of the artifact's precision."""
        reduced = reduced_atol(artifact.manifest.precision)
        atol = next(a for a in (self.options.atol, reduced, spec.parity.atol) if a is not None)
        sizes = spec.parity.sizes
        profiles = [
            p
            for name in chosen
            if isinstance(section := artifact.manifest.graphs[name].runtime, TrtSection)
            for p in section.profiles
        ]
        if profiles:
            sizes = [s for s in sizes if any(fits(p, spec.sizes(s)) for p in profiles)]
            sizes += [{d: r.opt for d, r in p.items()} for p in profiles]
        return ParityOptions(sizes=sizes, atol=atol)
