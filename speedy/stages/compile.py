"""Compile an artifact's graphs for a backend (speedy.backends: ORT-optimized ONNX, TensorRT
engines, AOTInductor, OpenVINO IR...), which builds each graph; this stage does what they share.

Profiles for dynamic dims come from the lengths each graph receives when the parent runs real
utterances (see compile/profiles.py); each compiled graph records the typed runtime section its
backend needs, and the result is checked against its parent on the same real inputs like every
other stage. `--graph` compiles some graphs and leaves the others as they are.
"""

import hashlib
from pathlib import Path
from typing import Any, ClassVar

from speedy import runtime
from speedy.artifact import Artifact, GraphEntry, Precision, file_digest
from speedy.audio.cache import FeatureCache, default_cache_dir
from speedy.backends.base import CompileJob, backend
from speedy.compile.precision import require_qdq
from speedy.compile.profiles import (
    coverage_report,
    data_lengths,
    derive_profiles,
    parse_shapes,
)
from speedy.console import console
from speedy.data_source import data_files
from speedy.model_spec import ModelSpec, ParityOptions
from speedy.parity import PARITY_FIX, check
from speedy.shapes import PROFILES, Profile, describe
from speedy.stages.base import Draft, Stage, StageContext, carry_over, check_kind, selected_graphs
from speedy.stages.options import CompileOptions
from speedy.tasks import graph_feeds


class CompileStage(Stage):
    """A parent's graphs, each built by the chosen backend, checked against the parent."""

    name: ClassVar[str] = "compile"
    options: CompileOptions

    def __init__(self, options: CompileOptions) -> None:
        super().__init__(options)
        self.backend = backend(options.backend)
        self.backend.require(options.target)  # fail before any work when it cannot run here

    def fingerprint(self, parent: Artifact | None, spec: ModelSpec) -> str:
        """Also changes with the contents of --profiles-from (the profiles depend on them)."""
        key = super().fingerprint(parent, spec)
        if self.options.profiles_from is None:
            return key
        key += file_digest(data_files(self.options.profiles_from))
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()

    def precision(self, entry: GraphEntry) -> Precision:
        """A graph's precision (int8 when --int8), with its float parts in FP16 if --fp16."""
        precision = entry.precision
        if self.options.int8 and not precision.startswith("int8"):
            precision = "int8"
        if self.options.fp16:
            precision = "int8+fp16" if precision.startswith("int8") else "fp16"
        return precision

    def build(self, parent: Artifact | None, workdir: Path, ctx: StageContext) -> Draft:
        o, chosen_backend = self.options, self.backend
        needed = chosen_backend.compiles_from
        fix = (
            "pass the torch artifact (build/<recipe>/torch); in a recipe: stages: [compile]"
            if needed == "torch"
            else "pass an ONNX artifact (from export, simplify or quantize)"
        )
        chosen = selected_graphs(o, parent) if parent else []
        parent = check_kind(parent, needed, f"--backend {o.backend}", fix, chosen)
        graphs = carry_over(parent, workdir, [g for g in parent.manifest.graphs if g not in chosen])
        reports: dict[str, Any] = {}
        fed = self._fed(parent, ctx) if chosen_backend.profiles else {}
        memo: dict[str, Any] = {}
        for name in chosen:
            entry = parent.manifest.graphs[name]
            report: dict[str, Any] = {"backend": o.backend, "device": o.target}
            if o.int8:
                report["qdq_nodes"] = require_qdq(parent.file(name))
            profiles: list[Profile] = []
            if chosen_backend.profiles:
                profiles, profile_report = self._profiles(entry, fed[name], ctx)
                report |= {"profiles": PROFILES.dump_python(profiles, mode="json")}
                report |= profile_report
                for profile in profiles:
                    console.print(
                        f"  profile{f' ({name})' if len(chosen) > 1 else ''}: {describe(profile)}"
                    )
            job = CompileJob(
                graph=name,
                source=parent.file(name),
                inputs=entry.inputs,
                target=workdir / f"{name}{chosen_backend.suffix}",
                device=o.target,
                fp16=o.fp16,
                int8=o.int8,
                precision=self.precision(entry),
                options=o.backend_options,
                spec=ctx.spec,
                profiles=profiles,
                memo=memo,
            )
            compiled = chosen_backend.compile(job)
            graphs[name] = entry.model_copy(
                update={
                    "kind": chosen_backend.kind,
                    "files": compiled.files,
                    "precision": self.precision(entry),
                    "runtime": compiled.section,
                }
            )
            reports[name] = report | compiled.report
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
            if artifact.manifest.reduced_atol is None
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
        """The recipe's parity sizes that the compiled graphs take (a TensorRT engine: those its
        profiles cover) at the tolerance of the artifact's precision."""
        reduced = artifact.manifest.reduced_atol
        atol = next(a for a in (self.options.atol, reduced, spec.parity.atol) if a is not None)
        sizes = spec.parity.sizes
        for name in chosen:
            sizes = self.backend.parity_sizes(artifact.manifest.graphs[name].runtime, sizes, spec)
        return ParityOptions(sizes=sizes, atol=atol)
