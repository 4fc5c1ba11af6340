"""Compile an artifact for a runtime: TensorRT engine, ORT-optimized model, or AOTInductor package.

Profiles for dynamic dims come from the lengths of real utterances (see compile/profiles.py);
the result is checked against its parent on the same real inputs like every other stage.
"""

import hashlib
import tempfile
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from speedy import runtime
from speedy.artifact import Artifact, file_digest
from speedy.compile import ort as ort_backend
from speedy.compile.aoti import compile_package
from speedy.compile.fft_conv import FftConvOptions, fft_convolutions
from speedy.compile.ort import SESSION_REPORT, Level, Provider
from speedy.compile.precision import require_qdq, to_fp16
from speedy.compile.profiles import (
    COMPILE_REPORT,
    PROFILES,
    Profile,
    coverage_report,
    data_lengths,
    derive_profiles,
    describe,
    fits,
    parse_shapes,
    stored_profiles,
)
from speedy.compile.trt import build_engine
from speedy.console import console
from speedy.data_source import data_files, read_features
from speedy.errors import SpeedyError
from speedy.model_spec import ModelSpec, ParityOptions
from speedy.onnx_io import load_onnx, save_onnx
from speedy.parity import PARITY_FIX, check
from speedy.runtime.torch_session import TorchSession, torch_device
from speedy.runtime.trt_session import import_tensorrt
from speedy.stages.base import Draft, Stage, StageContext

Backend = Literal["trt", "ort", "aoti"]
Device = Literal["cpu", "cuda"]
MODEL_FILES: dict[str, str] = {"trt": "model.engine", "ort": "model.onnx", "aoti": "model.pt2"}
PARENT_KIND: dict[str, str] = {"trt": "onnx", "ort": "onnx", "aoti": "torch"}
# Largest allowed error against the parent when precision drops (fp32 keeps the recipe's atol).
REDUCED_ATOL = {"fp16": 1e-2, "int8": 1e-1}


def reduced_atol(precision: str) -> float | None:
    """The parity tolerance of a reduced precision (fp16, int8...); None for fp32."""
    return next((atol for kind, atol in REDUCED_ATOL.items() if precision.startswith(kind)), None)


class CompileOptions(BaseModel):
    """Backend, precision, profile and backend-specific settings."""

    model_config = ConfigDict(extra="forbid")

    backend: Backend = "ort"
    device: Device | None = None  # None: cuda for trt, cpu otherwise
    fp16: bool = False
    int8: bool = False  # needs explicit Q/DQ nodes in the parent
    shapes: list[str] = Field(default_factory=list)  # "NAME:MIN,OPT,MAX"
    max_seq_len: PositiveInt | None = None
    profiles_from: Path | None = None  # data for the profiles (default: the run's data)
    profile_span: float = Field(4.0, ge=1.5)  # max/min of one profile's length range
    max_profiles: int = Field(4, ge=1, le=16)
    timing_cache: Path | None = None
    workspace_mb: PositiveInt | None = None
    ort_level: Level = "all"
    providers: list[Provider] = Field(default_factory=lambda: ["cpu"])
    ort_threads: int = Field(0, ge=0)  # intra-op threads the session uses (0: ORT's default)
    fft_conv: bool = False  # ort on CPU: long, wide 1-D convs as block FFT convolutions
    atol: float | None = Field(None, ge=0)  # parity tolerance (default: by precision)
    verify: bool = True


class CompileStage(Stage):
    """ONNX -> TensorRT engine or ORT-optimized ONNX; torch -> AOTInductor package."""

    name: ClassVar[str] = "compile"
    options: CompileOptions

    def __init__(self, options: CompileOptions) -> None:
        super().__init__(options)
        o = options
        if o.int8 and o.backend == "aoti":
            raise SpeedyError(
                "--int8 applies to the trt and ort backends",
                "quantize to Q/DQ ONNX, then compile with --backend trt or ort",
            )
        if o.backend == "trt" and o.device == "cpu":
            raise SpeedyError("TensorRT engines run on CUDA only", "drop --device cpu")
        if o.backend == "trt":
            import_tensorrt()  # fail before any work when TensorRT is missing
        if o.backend == "aoti" and o.device == "cuda":
            torch_device("cuda")  # a clear error where CUDA is missing
        if o.backend == "aoti" and (o.shapes or o.max_seq_len or o.profiles_from):
            raise SpeedyError(
                "--shapes, --max-seq-len and --profiles-from apply to the trt and ort backends",
                "AOTInductor compiles for the recipe's whole dim ranges; drop those options",
            )
        if o.backend != "trt" and o.timing_cache:
            raise SpeedyError("--timing-cache applies to --backend trt", "drop --timing-cache")
        if o.fft_conv and (o.backend != "ort" or o.fp16 or o.providers != ["cpu"]):
            raise SpeedyError(
                "--fft-conv applies to FP32 models on ONNX Runtime's CPU provider",
                "use it with --backend ort, without --fp16 and GPU --provider options",
            )
        if o.backend == "aoti" and o.workspace_mb:
            raise SpeedyError(
                "--workspace applies to TensorRT (trt, or ort's TensorRT provider)",
                "drop --workspace",
            )

    @property
    def device(self) -> str:
        return self.options.device or ("cuda" if self.options.backend == "trt" else "cpu")

    def fingerprint(self, parent: Artifact | None, spec: ModelSpec) -> str:
        """Also changes with the contents of --profiles-from (the profiles depend on them)."""
        key = super().fingerprint(parent, spec)
        if self.options.profiles_from is None:
            return key
        key += file_digest(data_files(self.options.profiles_from))
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()

    def precision(self, parent: Artifact) -> str:
        """The parent's precision (int8 when --int8), with its float parts in FP16 if --fp16."""
        precision = parent.manifest.precision
        if self.options.int8 and not precision.startswith("int8"):
            precision = "int8"
        if self.options.fp16:
            precision = "int8+fp16" if precision.startswith("int8") else "fp16"
        return precision

    def build(self, parent: Artifact | None, workdir: Path, ctx: StageContext) -> Draft:
        o = self.options
        needed = PARENT_KIND[o.backend]
        if parent is None or parent.manifest.kind != needed:
            raise SpeedyError(
                f"--backend {o.backend} compiles a {needed} artifact, not "
                f"{parent.manifest.kind if parent else 'nothing'}",
                "pass the torch artifact (build/<recipe>/torch); in a recipe: stages: [compile]"
                if needed == "torch"
                else "pass an ONNX artifact (from export, simplify or quantize)",
            )
        report: dict = {"backend": o.backend, "device": self.device}
        if o.int8:
            report["qdq_nodes"] = require_qdq(parent)
        if o.backend == "aoti":
            return self._aoti(parent, workdir, ctx, report)
        profiles, profile_report = self._profiles(ctx)
        report |= {"profiles": PROFILES.dump_python(profiles, mode="json")} | profile_report
        for profile in profiles:
            console.print(f"  profile: {describe(profile)}")
        if o.backend == "trt":
            return self._trt(parent, workdir, ctx, report, profiles)
        return self._ort(parent, workdir, ctx, report, profiles)

    def _profiles(self, ctx: StageContext) -> tuple[list[Profile], dict]:
        o = self.options
        overrides = parse_shapes(o.shapes, ctx.spec)
        features = read_features(o.profiles_from, ctx.spec) if o.profiles_from else ctx.features
        lengths = data_lengths(ctx.spec, features)
        profiles = derive_profiles(
            ctx.spec, lengths, overrides, o.max_seq_len, o.profile_span, o.max_profiles
        )
        source = str(o.profiles_from) if o.profiles_from else "the run's data"
        return profiles, {"profile_data": {"source": source, **coverage_report(profiles, lengths)}}

    def _aoti(self, parent: Artifact, workdir: Path, ctx: StageContext, report: dict) -> Draft:
        module = TorchSession(parent.manifest, parent.model_file).module
        file = MODEL_FILES["aoti"]
        report |= compile_package(module, ctx.spec, workdir / file, self.device, self.options.fp16)
        return Draft("aoti", [file], self.precision(parent), {COMPILE_REPORT: report})

    def _trt(
        self,
        parent: Artifact,
        workdir: Path,
        ctx: StageContext,
        report: dict,
        profiles: list[Profile],
    ) -> Draft:
        o = self.options
        engine, target = build_engine(
            parent.model_file, ctx.spec.inputs(), profiles, o.fp16, o.workspace_mb, o.timing_cache
        )
        file = MODEL_FILES["trt"]
        (workdir / file).write_bytes(engine)
        reports = {COMPILE_REPORT: report, "engine": target | {"profiles": report["profiles"]}}
        return Draft("trt", [file], self.precision(parent), reports)

    def _ort(
        self,
        parent: Artifact,
        workdir: Path,
        ctx: StageContext,
        report: dict,
        profiles: list[Profile],
    ) -> Draft:
        o = self.options
        # with FFT convs, ORT folds their spectral weights when the session loads: folded
        # ahead of time, they would make the file about ten times larger
        level = "disable" if o.fft_conv else ort_backend.offline_level(o.ort_level, o.providers)
        with tempfile.TemporaryDirectory(prefix="speedy-compile-") as tmp:
            source = parent.model_file
            if o.fp16:
                source = save_onnx(to_fp16(load_onnx(source)), Path(tmp) / "model.onnx")[0]
            if o.fft_conv:
                model, rewritten = fft_convolutions(load_onnx(source), FftConvOptions())
                source = save_onnx(model, Path(tmp) / "model.onnx")[0]
                report["fft_convs"] = rewritten
                console.print(f"  {len(rewritten)} convs as block FFT convolutions")
            files = ort_backend.optimize(source, workdir / MODEL_FILES["ort"], level)
        trt_options = ort_backend.tensorrt_options(
            profiles, ctx.spec.inputs(), o.int8, o.workspace_mb
        )
        settings = ort_backend.settings_for(
            o.ort_level, level, o.providers, o.ort_threads, trt_options
        )
        report |= {"offline_level": level}
        reports = {COMPILE_REPORT: report, SESSION_REPORT: settings.model_dump(mode="json")}
        return Draft("onnx", [f.name for f in files], self.precision(parent), reports)

    def validate(self, parent: Artifact | None, artifact: Artifact, ctx: StageContext) -> dict:
        assert parent is not None
        reference = runtime.load(parent.path, threads=ctx.threads)
        candidate = runtime.load(artifact.path, device=self.device, threads=ctx.threads)
        spec = self._parity_spec(ctx.spec, artifact)
        what = f"the {self.options.backend} artifact"
        precision = artifact.manifest.precision
        fix = (
            PARITY_FIX
            if reduced_atol(precision) is None
            else f"{precision} moves the output more than fp32 does: build it with --skip-parity, "
            "listen to it (speedy infer), and if it sounds right pass a wider --atol"
        )
        return check(reference, candidate, spec, ctx.features, what, self.options.verify, fix)

    def _parity_spec(self, spec: ModelSpec, artifact: Artifact) -> ModelSpec:
        """The recipe's parity sizes (for TensorRT: those its profiles cover, plus each `opt`)."""
        reduced = reduced_atol(artifact.manifest.precision)
        atol = next(a for a in (self.options.atol, reduced, spec.parity.atol) if a is not None)
        sizes = spec.parity.sizes
        if artifact.manifest.kind == "trt":
            profiles = stored_profiles(artifact.manifest.reports)
            sizes = [s for s in sizes if any(fits(p, spec.sizes(s)) for p in profiles)]
            sizes += [{d: r.opt for d, r in p.items()} for p in profiles]
        return spec.model_copy(update={"parity": ParityOptions(sizes=sizes, atol=atol)})
