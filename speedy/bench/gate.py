"""The CI regression gate: compare a bench run with a stored baseline, figure by figure.

A baseline keeps, per artifact, the ratios to the reference (speed-up of the whole runs' compute
time, so of latency as much as of RTF; throughput, first-chunk speed-up, size, peak memory) and
the quality figures (DNSMOS, PESQ, STOI, MCD, SNR, log-mel, seam SNR; tensor SNR for a model
whose outputs are not audio). Ratios are compared with a relative tolerance, since only they
survive a noisy machine; quality figures with an absolute one. A baseline is written only on
request (`--save-baseline`).
"""

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from speedy import __version__
from speedy.artifact import now
from speedy.bench.results import BenchReport
from speedy.errors import SpeedyError, first_invalid
from speedy.plain_data import json_object

if TYPE_CHECKING:
    from speedy.bench.runner import Prepared

BASELINE_FORMAT = "speedy-bench-baseline"
BASELINE_VERSION = 1
SNR_GATE_CAP_DB = 60.0  # beyond this an SNR means "identical"; library changes move it freely
REFRESH = "if the change is intended, refresh the baseline with `--save-baseline PATH`"


@dataclass(frozen=True)
class Rule:
    """How one figure is gated: direction, tolerance, and whether the tolerance is relative."""

    group: str
    higher_is_better: bool
    tolerance: float
    relative: bool


RATIO_RULES = {
    "speedup": Rule("speed", True, 0.2, True),
    "first_chunk_speedup": Rule("speed", True, 0.2, True),
    "size": Rule("size", False, 0.02, True),
    # glibc's adaptive mmap threshold moves PyTorch's peak RSS by up to ~30% between identical
    # runs (pinning the threshold steadies it but slows PyTorch 1.8x), hence the wide margin
    "rss_peak": Rule("memory", False, 0.35, True),
}
THROUGHPUT_RULE = Rule("speed", True, 0.2, True)  # ratios named throughput_b<batch>
QUALITY_RULES = {
    "pesq": Rule("quality", True, 0.1, False),
    "stoi": Rule("quality", True, 0.01, False),
    "snr": Rule("quality", True, 3.0, False),
    "mcd": Rule("quality", False, 0.3, False),
    "mel": Rule("quality", False, 0.05, False),
    "dnsmos_sig": Rule("quality", True, 0.1, False),
    "dnsmos_bak": Rule("quality", True, 0.1, False),
    "dnsmos_ovrl": Rule("quality", True, 0.1, False),
    "dnsmos_p808": Rule("quality", True, 0.1, False),
    "seam_snr": Rule("quality", True, 3.0, False),
    "tensor_snr": Rule("quality", True, 3.0, False),
}
CAPPED_SNRS = ("snr", "seam_snr", "tensor_snr")
GROUPS = ("speed", "size", "memory")  # a bare number in --tolerance sets all three


class Baseline(BaseModel):
    """The figures a later run must not fall behind, and what makes runs comparable."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["speedy-bench-baseline"]
    version: int
    speedy_version: str
    created: str
    recipe: str
    reference: str
    device: str
    threads: int
    batches: list[int]
    chunk_frames: int | None
    vocoder_digest: str | None = None  # text-to-mel artifacts measured through this vocoder
    data_files: list[str]
    data_digest: str
    machine: dict[str, Any]
    artifacts: dict[str, dict[str, float]]


def _rule(figure: str) -> Rule | None:
    if figure.startswith("throughput_b"):
        return THROUGHPUT_RULE
    return RATIO_RULES.get(figure) or QUALITY_RULES.get(figure)


def gated_figures(report: BenchReport) -> dict[str, dict[str, float]]:
    """Per artifact, the figures the gate checks, with SNRs capped at SNR_GATE_CAP_DB."""
    found = {}
    for name, result in report.artifacts.items():
        figures = {**result.ratios, **result.quality}
        found[name] = {
            key: min(value, SNR_GATE_CAP_DB) if key in CAPPED_SNRS else value
            for key, value in figures.items()
            if _rule(key) is not None and value is not None
        }
    return found


def save_baseline(report: BenchReport, path: Path) -> None:
    """Write `report`'s gated figures as a baseline file (atomically)."""
    baseline = Baseline(
        format=BASELINE_FORMAT,
        version=BASELINE_VERSION,
        speedy_version=__version__,
        created=now(),
        recipe=report.recipe,
        reference=report.reference,
        device=report.settings.device,
        threads=report.settings.threads,
        batches=report.settings.batches,
        chunk_frames=report.settings.chunk_frames,
        vocoder_digest=report.settings.vocoder_digest,
        data_files=report.data.files,
        data_digest=report.data.digest,
        machine=report.machine,
        artifacts=gated_figures(report),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(baseline.model_dump_json(indent=2) + "\n")
    partial.replace(path)


def is_baseline(path: Path) -> bool:
    """Whether `path` is a baseline file `save_baseline` wrote (its format says so)."""
    return json_object(path).get("format") == BASELINE_FORMAT


def load_baseline(path: Path) -> Baseline:
    """Read a baseline file, with a clear error when it is missing, foreign or incompatible."""
    if not path.is_file():
        raise SpeedyError(
            f"baseline file not found: {path}",
            "create it with `speedy bench ... --save-baseline PATH`",
        )
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SpeedyError(f"baseline {path} is not JSON: {exc}", "restore or refresh it") from exc
    if not isinstance(raw, dict) or raw.get("format") != BASELINE_FORMAT:
        raise SpeedyError(
            f"{path} is not a speedy bench baseline",
            "pass a file written by `speedy bench --save-baseline`",
        )
    if raw.get("version") != BASELINE_VERSION:
        raise SpeedyError(
            f"baseline {path} has format version {raw.get('version')} "
            f"(speedy {raw.get('speedy_version', '?')}); this speedy reads version "
            f"{BASELINE_VERSION}",
            "refresh it with this speedy: `speedy bench ... --save-baseline PATH`",
        )
    try:
        return Baseline.model_validate(raw)
    except ValidationError as exc:
        raise SpeedyError(
            f"baseline {path}: {first_invalid(exc)}",
            "refresh it with `speedy bench ... --save-baseline PATH`",
        ) from exc


def parse_tolerance(text: str | None) -> dict[str, float]:
    """`--tolerance`: a bare number (relative, for speed/size/memory) and/or NAME=VALUE terms,
    NAME a group (speed, size, memory, quality) or a figure (pesq, dnsmos_ovrl, throughput_b4)."""
    overrides: dict[str, float] = {}
    example = "e.g. '0.25' or 'speed=0.3,pesq=0.2'"
    for term in (text or "").split(","):
        if not term.strip():
            continue
        name, sep, value = term.rpartition("=")
        name = name.strip() if sep else ""
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number < 0:
            raise SpeedyError(f"cannot parse tolerance term {term.strip()!r}", example)
        if name and name not in (*GROUPS, "quality") and _rule(name) is None:
            known = ", ".join([*GROUPS, "quality", *RATIO_RULES, *QUALITY_RULES])
            raise SpeedyError(f"unknown tolerance name {name!r}", f"use one of {known}")
        for key in [name] if name else GROUPS:
            overrides[key] = number
    return overrides


def check_compatible(baseline: Baseline, prepared: "Prepared") -> None:
    """Refuse a baseline measured under other conditions, before anything is measured."""
    fix = f"bench under the baseline's conditions, or {REFRESH}"
    o = prepared.options
    pairs = {
        "recipe": (baseline.recipe, prepared.spec.recipe),
        "reference": (baseline.reference, prepared.reference),
        "device": (baseline.device, o.device),
        "threads": (baseline.threads, o.threads),
        "chunk frames": (
            baseline.chunk_frames,
            prepared.streamer.chunk if prepared.streamer else None,
        ),
        "vocoder": (baseline.vocoder_digest, prepared.vocoder_digest),
    }
    for what, (expected, actual) in pairs.items():
        if expected != actual:
            raise SpeedyError(f"the baseline has {what} {expected}, this run {actual}", fix)
    if missing_batches := sorted(set(baseline.batches) - set(prepared.batches)):
        raise SpeedyError(
            f"the baseline has throughput at batch {missing_batches}, this run does not",
            f"pass --batch for each of {baseline.batches}, or {REFRESH}",
        )
    if baseline.data_digest != prepared.digest:
        raise SpeedyError(
            f"the baseline was measured on other data ({len(baseline.data_files)} files: "
            f"{', '.join(baseline.data_files[:3])}...)",
            fix,
        )
    if missing := sorted(baseline.artifacts.keys() - set(prepared.artifacts)):
        raise SpeedyError(
            f"the baseline has artifact(s) {missing} that this run lacks",
            f"bench them too (named as in the baseline via NAME=PATH), or {REFRESH}",
        )


CPU_FIELDS = ("cpu", "simd", "cores")  # what moves speed ratios between machines


def other_cpu(baseline: Baseline, machine: dict[str, Any]) -> str | None:
    """A sentence naming both CPUs when the baseline was measured on another kind of CPU."""

    def described(record: dict[str, Any]) -> str:
        cpu, simd, cores = (record.get(field) for field in CPU_FIELDS)
        return f"{cpu} ({simd or 'vector extension unknown'}, {cores} cores)"

    if all(baseline.machine.get(f) == machine.get(f) for f in CPU_FIELDS):
        return None
    return (
        f"the baseline was measured on {described(baseline.machine)}, this run on "
        f"{described(machine)}: speed ratios may differ for that reason alone"
    )


@dataclass(frozen=True)
class Check:
    artifact: str
    figure: str
    baseline: float
    now: float
    limit: float  # the worst value still allowed
    higher_is_better: bool

    @property
    def passed(self) -> bool:
        return self.now >= self.limit if self.higher_is_better else self.now <= self.limit

    def describe(self) -> str:
        op = ">=" if self.higher_is_better else "<="
        return (
            f"{self.artifact} {self.figure} {self.baseline:.4g} -> {self.now:.4g} "
            f"(allowed {op} {self.limit:.4g})"
        )


def compare(report: BenchReport, baseline: Baseline, tolerance: dict[str, float]) -> list[Check]:
    """Every figure of the baseline's artifacts checked against this run."""
    figures = gated_figures(report)
    checks = []
    for name, expected in baseline.artifacts.items():
        for figure, base in expected.items():
            rule = _rule(figure)
            if rule is None:
                continue
            allowed = tolerance.get(figure, tolerance.get(rule.group, rule.tolerance))
            slack = allowed * abs(base) if rule.relative else allowed
            limit = base - slack if rule.higher_is_better else base + slack
            now = figures[name].get(figure, math.nan)  # not computed now: a regression
            checks.append(Check(name, figure, base, now, limit, rule.higher_is_better))
    return checks


def gate_record(checks: list[Check], path: Path) -> dict[str, Any]:
    """The gate's outcome for the report."""
    return {
        "baseline": str(path),
        "passed": all(c.passed for c in checks),
        "checks": [
            {
                "artifact": c.artifact,
                "figure": c.figure,
                "baseline": c.baseline,
                "now": c.now,
                "limit": c.limit,
                "higher_is_better": c.higher_is_better,
                "passed": c.passed,
            }
            for c in checks
        ],
    }


def enforce(checks: list[Check]) -> None:
    """Raise a one-line error naming each regressed figure."""
    failed = [c for c in checks if not c.passed]
    if failed:
        raise SpeedyError(
            f"regression gate failed, {len(failed)} figure(s) regressed: "
            + "; ".join(c.describe() for c in failed),
            REFRESH,
        )
