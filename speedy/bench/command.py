"""`speedy bench`: check everything, measure, write the report, then apply the gate."""

from dataclasses import dataclass
from pathlib import Path

from rich.table import Table as RichTable

from speedy.artifact import check_writable
from speedy.bench import gate, plots
from speedy.bench.report import Table, summary_table, write_report
from speedy.bench.runner import BenchPlan, name_artifacts, prepare, run_bench
from speedy.console import notice, out
from speedy.errors import SpeedyError


@dataclass
class BenchCommand:
    """The options of `speedy bench`, as the CLI received them."""

    artifacts: list[str]
    output: Path
    reference: str | None = None
    data: str = "default"
    device: str = "cpu"
    threads: int = 2
    batches: tuple[int, ...] = (1,)
    warmup: int = 1
    repeat: int = 3
    chunk_seconds: float | None = 0.25
    html: bool = True
    baseline: Path | None = None
    tolerance: str | None = None
    save_baseline: Path | None = None
    force: bool = False
    vocoder: Path | None = None


def _rich(table: Table) -> RichTable:
    shown = RichTable(title=table.title)
    for column in table.header:
        shown.add_column(column, justify="right" if shown.columns else "left")
    for row in table.rows:
        shown.add_row(*row)
    return shown


def _check_options(command: BenchCommand) -> None:
    check_writable(command.output, command.force)
    if command.save_baseline is not None:
        check_writable(command.save_baseline, command.force)
    if command.warmup < 0 or command.repeat < 1:
        raise SpeedyError(
            f"--warmup {command.warmup} --repeat {command.repeat}: need warmup >= 0, repeat >= 1",
            "e.g. --warmup 1 --repeat 3",
        )
    if command.threads < 1:
        raise SpeedyError(f"--threads {command.threads} must be at least 1", "e.g. --threads 2")
    if command.tolerance and command.baseline is None:
        raise SpeedyError("--tolerance applies to the gate only", "pass --baseline FILE with it")


def bench(command: BenchCommand) -> None:
    """Run the bench described by `command`; raise when the gate finds a regression."""
    _check_options(command)
    tolerance = gate.parse_tolerance(command.tolerance)
    baseline = gate.load_baseline(command.baseline) if command.baseline else None
    if command.html:
        plots.pyplot()  # a missing extra is reported now, not after the measurements
    artifacts, reference = name_artifacts(command.artifacts, command.reference)
    plan = BenchPlan(
        artifacts=artifacts,
        reference=reference,
        data=None if command.data == "default" else Path(command.data),
        device=command.device,
        threads=command.threads,
        batches=list(command.batches),
        warmup=command.warmup,
        repeat=command.repeat,
        chunk_seconds=command.chunk_seconds,
        vocoder=command.vocoder,
    )
    prepared = prepare(plan)
    if baseline is not None:
        gate.check_compatible(
            baseline,
            prepared.spec.recipe,
            reference,
            plan.device,
            plan.threads,
            list(prepared.batches),
            prepared.chunk,
            prepared.vocoder_digest,
            prepared.digest,
            list(artifacts),
        )
    run = run_bench(prepared)
    checks = None
    if baseline is not None and command.baseline is not None:
        checks = gate.compare(run.report, baseline, tolerance)
        if elsewhere := gate.other_cpu(baseline, run.report.machine):
            notice(elsewhere)
        run.report.gate = gate.gate_record(checks, command.baseline)
    write_report(run, prepared.spec.audio, command.output, command.force, command.html)
    out.print(_rich(summary_table(run.report)))
    if run.report.gate is not None:
        failed = sum(not c["passed"] for c in run.report.gate["checks"])
        out.print(f"gate: {len(run.report.gate['checks'])} checks, {failed} regressed")
    out.print(f"wrote {command.output}/" + ("index.html" if command.html else "bench.md"))
    if command.save_baseline is not None:
        gate.save_baseline(run.report, command.save_baseline)
        out.print(f"wrote baseline {command.save_baseline}")
    if checks is not None:
        gate.enforce(checks)
