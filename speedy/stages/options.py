"""Every stage's typed options in one light module: recipes validate all their sections with
these, whether or not the stage is listed, and the CLI derives its flags from them (a field with a
description is a flag, the description its help)."""

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    SerializeAsAny,
    field_validator,
    model_validator,
)

from speedy.backends.base import NoOptions, backend, compile_targets
from speedy.devices import Device
from speedy.errors import SpeedyError

Exporter = Literal["dynamo", "torchscript"]
Tool = Literal["onnxslim", "onnxsim", "ort"]
Precision = Literal["int8", "fp16", "mixed", "dynamic", "int4"]
Method = Literal["minmax", "entropy", "percentile", "mse"]
Granularity = Literal["block", "node"]
FloatWeights = Literal["int8", "fp16", "fp32"]


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

    tool: Tool = Field("onnxslim", description="Simplifier.")
    verify: bool = True


class StoredPlan(Options):
    """A mixed-precision plan found earlier: the groups kept in float, and the budget they met."""

    float_groups: list[str]
    budget: str


class QuantizeOptions(GraphOptions):
    """Precision, calibration data and method, quality budget and search settings."""

    precision: Precision = Field(
        "mixed",
        description="int8: every node (naive); mixed: INT8 with the most harmful groups in float "
        "under --budget; fp16; dynamic (MatMul-heavy graphs); int4 (4-bit weight-only "
        "MatMuls, for transformer decode).",
    )
    calib: str = Field(
        "default",
        description="Calibration data: directory or file of examples, a named set "
        "(calibration/NAME.yaml), or 'default' (the task's default data).",
    )
    method: Method = Field(
        "mse",
        description="Activation ranges: ORT's minmax/entropy/percentile calibrators, or mse "
        "(per-tensor clipping search).",
    )
    calib_size: PositiveInt = Field(16, description="Number of calibration crops.")
    per_channel: bool = Field(True, description="Per-channel weight scales.")
    budget: str | None = Field(
        None,
        description="Quality budget against the parent, e.g. 'pesq>=4.0,mel<=0.2' (default: the "
        "task's, pesq>=4.0 for vocoders, tensor_snr>=30 for generic models).",
    )
    no_budget: bool = Field(
        False, description="Keep the result whatever its quality (int8, fp16, dynamic, int4)."
    )
    granularity: Granularity = Field(
        "block", description="Sensitivity and precision per module block or node."
    )
    crop: dict[str, PositiveInt] = Field(default_factory=dict)  # default: half of each dim's opt
    probes: PositiveInt = 4  # held-out crops that score candidates (mixed)
    holdout_every: int = Field(4, ge=2)  # every Nth calibration example is held out (mixed)
    rank_by: str | None = None  # the metric sensitivities are ranked by (default: the task's)
    min_share: float = Field(0.01, ge=0, lt=1)  # mixed: smaller groups stay float, unmeasured
    keep_float: list[str] = Field(
        default_factory=list,
        description="Group, node or op type (e.g. Conv) kept in float (repeatable).",
    )
    float_weights: FloatWeights = Field(
        "int8", description="How layers kept in float store their weights (mixed, dynamic)."
    )
    exact_stream: bool = Field(
        True,
        description="A streaming step graph quantized with its whole graph: both keep float "
        "activations (int8 weights), so the stream equals the whole decode; "
        "--no-exact-stream rounds their activations too (faster, but the stream drifts).",
    )
    plan: StoredPlan | None = None  # mixed: build it and check the budget; search if it misses
    search: bool = False  # mixed: search even when a plan is stored

    @field_validator("budget")
    @classmethod
    def _budget(cls, value: str | None) -> str | None:
        if value is not None:
            from speedy.quality import parse_budget  # numpy and scipy: not at CLI start

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
                "drop --no-budget, or use --precision int8, fp16, dynamic or int4",
            )
        return self


class CompileOptions(GraphOptions):
    """What every backend takes (target device, precision, profiles, parity), and the chosen
    backend's own options in `backend_options` (given flat, as recipes and flags give them)."""

    backend: str = Field("ort", description="The backend to compile for (speedy.backends).")
    device: Device | None = Field(
        None, description="Target device, cpu or cuda (default: the backend's)."
    )
    fp16: bool = Field(False, description="FP16 inside, float32 I/O.")
    int8: bool = Field(False, description="INT8 from the parent's Q/DQ nodes.")
    shapes: list[str] = Field(
        default_factory=list, description="NAME:MIN,OPT,MAX for a dim or an input (repeatable)."
    )
    max_seq_len: PositiveInt | None = Field(None, description="Largest length the profiles accept.")
    profiles_from: Path | None = Field(
        None, description="Examples whose lengths set profiles (default: --data)."
    )
    profile_span: float = Field(4.0, ge=1.5)  # max/min of one profile's length range
    max_profiles: int = Field(4, ge=1, le=16)
    atol: float | None = Field(None, ge=0, description="Parity tolerance vs the parent.")
    verify: bool = True
    backend_options: SerializeAsAny[BaseModel] = Field(default_factory=NoOptions)

    @model_validator(mode="before")
    @classmethod
    def _backend_options(cls, data: Any) -> Any:
        """The chosen backend's options out of the flat settings; another backend's option
        given is an error naming the backends it applies to."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        chosen = backend(str(data.get("backend", "ort")))
        given = data.pop("backend_options", None)
        own = dict(given.model_dump() if isinstance(given, BaseModel) else given or {})
        for key in [k for k in data if k not in cls.model_fields]:
            if key in chosen.Options.model_fields:
                own[key] = data.pop(key)
            elif users := [n for n in compile_targets() if key in backend(n).Options.model_fields]:
                if data.pop(key) == option_default(key, backend(users[0]).Options):
                    continue  # left at its default: not given
                raise SpeedyError(
                    f"{flag_of(key, backend(users[0]).Options)} applies to "
                    f"--backend {' or '.join(users)}",
                    f"drop it, or compile with --backend {users[0]}",
                )
        data["backend_options"] = chosen.Options.model_validate(own)
        return data

    @model_validator(mode="after")
    def _combinations(self) -> "CompileOptions":
        """Options that do not go together (a SpeedyError, which pydantic passes on as is)."""
        chosen = backend(self.backend)
        if not chosen.compiles_from:
            targets = ", ".join(compile_targets())
            raise SpeedyError(f"--backend {self.backend} compiles nothing", f"use {targets}")
        readers = [n for n in compile_targets() if backend(n).reads_qdq]
        problems = [
            (
                self.int8 and not chosen.reads_qdq,
                f"--int8 applies to backends that read Q/DQ nodes ({', '.join(readers)})",
                "quantize to Q/DQ ONNX, then compile with one of them",
            ),
            (
                self.target not in chosen.devices,
                f"--backend {self.backend} runs on {' or '.join(chosen.devices)} only",
                f"drop --device {self.target}",
            ),
            (
                not chosen.profiles and bool(self.shapes or self.max_seq_len or self.profiles_from),
                "--shapes, --max-seq-len and --profiles-from apply to backends with profiles "
                f"({', '.join(n for n in compile_targets() if backend(n).profiles)})",
                f"{self.backend} compiles for the recipe's whole dim ranges; drop those options",
            ),
        ]
        for found, problem, fix in problems:
            if found:
                raise SpeedyError(problem, fix)
        chosen.check(self.fp16, self.backend_options)
        return self

    @property
    def target(self) -> Device:
        return self.device or backend(self.backend).default_device


def option_default(name: str, model: type[BaseModel]) -> Any:
    """The default of option `name` of `model`."""
    return model.model_fields[name].get_default(call_default_factory=True)


def option_extra(name: str, model: type[BaseModel]) -> dict[str, Any]:
    """What option `name` of `model` says of its command-line form (`flag`, `envvar`)."""
    extra = model.model_fields[name].json_schema_extra
    return extra if isinstance(extra, dict) else {}


def flag_of(name: str, model: type[BaseModel]) -> str:
    """The command-line flag of option `name` of `model`."""
    return str(option_extra(name, model).get("flag") or "--" + name.replace("_", "-"))
