"""`speedy bench`: check everything, measure, write the report, then apply the gate."""

from rich.table import Table as RichTable

from speedy.bench import gate, plots
from speedy.bench.options import BenchOptions
from speedy.bench.report import REPORT_FILE, Table, summary_table, write_report
from speedy.bench.runner import prepare, run_bench
from speedy.console import notice, out, shown
from speedy.errors import SpeedyError
from speedy.outputs import check_file_writable, check_writable


def _rich(table: Table) -> RichTable:
    """The table for the terminal, its cells (artifact names among them) printed as they are."""
    rich = RichTable(title=shown(table.title))
    for column in table.header:
        rich.add_column(shown(column), justify="right" if rich.columns else "left")
    for row in table.rows:
        rich.add_row(*map(shown, row))
    return rich


def _check_options(options: BenchOptions) -> None:
    check_writable(options.output, options.force, REPORT_FILE)
    if options.save_baseline is not None:
        check_file_writable(
            options.save_baseline, options.force, options.force_file, gate.is_baseline
        )
    if options.warmup < 0 or options.repeat < 1:
        raise SpeedyError(
            f"--warmup {options.warmup} --repeat {options.repeat}: need warmup >= 0, repeat >= 1",
            "e.g. --warmup 1 --repeat 3",
        )
    if options.threads < 1:
        raise SpeedyError(f"--threads {options.threads} must be at least 1", "e.g. --threads 2")
    if options.tolerance and options.baseline is None:
        raise SpeedyError("--tolerance applies to the gate only", "pass --baseline FILE with it")


def bench(options: BenchOptions) -> None:
    """Run the bench described by `options`; raise when the gate finds a regression."""
    _check_options(options)
    tolerance = gate.parse_tolerance(options.tolerance)
    baseline = gate.load_baseline(options.baseline) if options.baseline else None
    if options.html:
        plots.pyplot()  # a missing extra is reported now, not after the measurements
    prepared = prepare(options)
    if baseline is not None:
        gate.check_compatible(baseline, prepared)
    run = run_bench(prepared)
    checks = None
    if baseline is not None and options.baseline is not None:
        checks = gate.compare(run.report, baseline, tolerance)
        if elsewhere := gate.other_cpu(baseline, run.report.machine):
            notice(elsewhere)
        run.report.gate = gate.gate_record(checks, options.baseline)
    write_report(run, prepared.spec.audio, options.output, options.force, options.html)
    out.print(_rich(summary_table(run.report)))
    if run.report.gate is not None:
        failed = sum(not c["passed"] for c in run.report.gate["checks"])
        out.print(f"gate: {len(run.report.gate['checks'])} checks, {failed} regressed")
    out.print(f"wrote {shown(options.output)}/" + ("index.html" if options.html else "bench.md"))
    if options.save_baseline is not None:
        gate.save_baseline(run.report, options.save_baseline)
        out.print(f"wrote baseline {shown(options.save_baseline)}")
    if checks is not None:
        gate.enforce(checks)
