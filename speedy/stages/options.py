"""Every stage's typed options in one light module: recipes validate all their sections with
these, whether or not the stage is listed, and the CLI builds them from its flags."""

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

from speedy.backends.ort.build import Provider
from speedy.backends.ort.section import Level
from speedy.devices import Device
from speedy.errors import SpeedyError
from speedy.quality import parse_budget

Exporter = Literal["dynamo", "torchscript"]
Tool = Literal["onnxslim", "onnxsim", "ort"]
Precision = Literal["int8", "fp16", "mixed", "dynamic"]
Method = Literal["minmax", "entropy", "percentile", "mse"]
Granularity = Literal["block", "node"]
FloatWeights = Literal["int8", "fp16", "fp32"]
Backend = Literal["trt", "ort", "aoti"]


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GraphOptions(Options):
    """Options of a stage that acts per graph: which graphs (none named: all)."""

    graphs: list[str] = Field(default_factory=list)


class LoadOptions(Options):
    """Which weights to load (none: the family's seeded initial weights)."""

    checkpoint: Path | None = None


class ImportOptions(Options):
    """The ONNX file to import and the model's own config, if any."""

    model: Path
    config: Path | None = None


class ExportOptions(Options):
    """Exporter settings; tracing sizes must differ from every parity size."""

    opset: int = Field(18, ge=13, le=23)
    exporter: Exporter = "dynamo"
    fallback: bool = True
    trace_sizes: dict[str, int] = Field(default_factory=dict)
    rewrites: list[str] = Field(default_factory=list)  # speedy.rewrites, applied in this order
    verify: bool = True


class SimplifyOptions(GraphOptions):
    """Which simplifier to run."""

    tool: Tool = "onnxslim"
    verify: bool = True


class StoredPlan(Options):
    """A mixed-precision plan found earlier: the groups kept in float, and the budget they met."""

    float_groups: list[str]
    budget: str


class QuantizeOptions(GraphOptions):
    """Precision, calibration data and method, quality budget and search settings."""

    precision: Precision = "mixed"
    calib: str = "default"  # directory or file of examples, a named set, or `default`
    method: Method = "mse"
    calib_size: PositiveInt = 16  # calibration crops
    per_channel: bool = True
    budget: str | None = None  # e.g. "pesq>=4.0,mel<=0.2"; default: the task's
    no_budget: bool = False  # keep the result whatever its quality (not with mixed or budget)
    granularity: Granularity = "block"
    crop: dict[str, PositiveInt] = Field(default_factory=dict)  # default: half of each dim's opt
    probes: PositiveInt = 4  # held-out crops that score candidates (mixed)
    holdout_every: int = Field(4, ge=2)  # every Nth calibration example is held out (mixed)
    rank_by: str | None = None  # the metric sensitivities are ranked by (default: the task's)
    min_share: float = Field(0.01, ge=0, lt=1)  # mixed: smaller groups stay float, unmeasured
    keep_float: list[str] = Field(default_factory=list)  # groups, nodes or op types
    float_weights: FloatWeights = "int8"  # how layers kept in float store their weights
    plan: StoredPlan | None = None  # mixed: build it and check the budget; search if it misses
    search: bool = False  # mixed: search even when a plan is stored

    @field_validator("budget")
    @classmethod
    def _budget(cls, value: str | None) -> str | None:
        if value is not None:
            parse_budget(value, known=None)  # a SpeedyError naming the bad term
        return value

    @model_validator(mode="after")
    def _no_budget(self) -> "QuantizeOptions":
        """`no_budget` goes with neither a budget nor `mixed`, which searches under one."""
        if self.no_budget and self.budget is not None:
            raise SpeedyError("--no-budget and --budget contradict each other", "pass one of them")
        if self.no_budget and self.precision == "mixed":
            raise SpeedyError(
                "--no-budget: mixed precision searches under a quality budget",
                "drop --no-budget, or use --precision int8, fp16 or dynamic",
            )
        return self


class CompileOptions(GraphOptions):
    """Backend, precision, profile and backend-specific settings."""

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

    @model_validator(mode="after")
    def _combinations(self) -> "CompileOptions":
        """Options that do not go together (a SpeedyError, which pydantic passes on as is)."""
        aoti, trt = self.backend == "aoti", self.backend == "trt"
        problems = [
            (
                self.int8 and aoti,
                "--int8 applies to the trt and ort backends",
                "quantize to Q/DQ ONNX, then compile with --backend trt or ort",
            ),
            (
                trt and self.device == "cpu",
                "TensorRT engines run on CUDA only",
                "drop --device cpu",
            ),
            (
                aoti and bool(self.shapes or self.max_seq_len or self.profiles_from),
                "--shapes, --max-seq-len and --profiles-from apply to the trt and ort backends",
                "AOTInductor compiles for the recipe's whole dim ranges; drop those options",
            ),
            (
                not trt and self.timing_cache is not None,
                "--timing-cache applies to --backend trt",
                "drop --timing-cache",
            ),
            (
                self.fft_conv and (self.backend != "ort" or self.fp16 or self.providers != ["cpu"]),
                "--fft-conv applies to FP32 models on ONNX Runtime's CPU provider",
                "use it with --backend ort, without --fp16 and GPU --provider options",
            ),
            (
                aoti and self.workspace_mb is not None,
                "--workspace applies to TensorRT (trt, or ort's TensorRT provider)",
                "drop --workspace",
            ),
        ]
        for found, problem, fix in problems:
            if found:
                raise SpeedyError(problem, fix)
        return self

    @property
    def target(self) -> Device:
        return self.device or ("cuda" if self.backend == "trt" else "cpu")
