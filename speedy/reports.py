"""What stages report into a manifest, typed: each report is checked when the manifest is written
or read (`Reports`), and commands read them through these models rather than by key. Pure data.
Reports hold more than these fields (tables, per-example figures); those stay as they are."""

import math

from pydantic import BaseModel, ConfigDict


class Report(BaseModel):
    """A report: the typed fields readers use, and any details beside them."""

    model_config = ConfigDict(extra="allow")


class GraphSize(Report):
    nodes: int
    initializers: int
    weight_bytes: int


class Simplified(Report):
    before: GraphSize
    after: GraphSize


class SimplifyReport(Report):
    tool: str
    graphs: dict[str, Simplified]


class Coverage(Report):
    """How many of the profile data's utterances the derived profiles cover."""

    source: str
    clips: int
    covered: int


class CompiledGraph(Report):
    backend: str
    device: str
    profile_data: Coverage | None = None
    qdq_nodes: int | None = None


class QuantizedGroup(Report):
    """One group (module block or node) of a quantized graph, and what it became."""

    group: str
    op_types: str
    mac_share: float
    sensitivity: dict[str, float | None] | None  # each metric with the group alone in INT8
    precision: str


class Calibration(Report):
    example_digests: list[str] = []


class QuantizedGraph(Report):
    precision: str
    size_ratio: float
    granularity: str = "block"
    budget: list[str] = []
    calibration: Calibration | None = None
    table: list[QuantizedGroup] | None = None


class ParityCase(BaseModel):
    graph: str
    sizes: dict[str, int]
    max_abs_error: dict[str, float | None]  # None: infinite (stored JSON has no infinity)
    snr_db: dict[str, float | None]

    @property
    def worst(self) -> float:
        """Its largest error; infinite where any output's is NaN or infinite."""
        errors = self.max_abs_error.values()
        return max((math.inf if e is None or math.isnan(e) else e for e in errors), default=0.0)


class ParityReport(BaseModel):
    atol: float
    passed: bool
    cases: list[ParityCase]

    @property
    def worst(self) -> float:
        """The largest error of all cases; infinite where any is NaN or infinite."""
        return max((case.worst for case in self.cases), default=0.0)

    def summary(self) -> str:
        graphs = len({c.graph for c in self.cases}) > 1
        parts = [
            (f"{c.graph} " if graphs else "")
            + f"{'x'.join(map(str, c.sizes.values()))}: {c.worst:.2e}"
            for c in self.cases
        ]
        return f"max |err| {self.worst:.2e} (atol {self.atol:.0e}; {', '.join(parts)})"


class QualityReport(Report):
    """A quantized artifact's figures against its parent, and what they mean."""

    examples: int
    metrics: dict[str, float | None]
    verdict: str


class Reports(BaseModel):
    """A manifest's reports, by the stage or check that wrote them."""

    model_config = ConfigDict(extra="allow")

    simplify: SimplifyReport | None = None
    compile: dict[str, CompiledGraph] | None = None
    quantize: dict[str, QuantizedGraph] | None = None
    parity: ParityReport | None = None
    quality: QualityReport | None = None
