"""`speedy bench`: artifacts measured side by side, with a report and a regression gate."""

from pathlib import Path
from typing import Annotated, Any

import typer

from speedy.bench.options import BenchOptions
from speedy.cli.app import app
from speedy.cli.params import Force, ForceFile, Threads, Trust, given, validated, with_flags


@app.command()
@with_flags(BenchOptions)
def bench(
    artifacts: Annotated[
        list[str], typer.Argument(help="Artifact directories of one recipe; NAME=PATH names one.")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Report directory to write.")],
    threads: Threads = 2,
    trust: Trust = False,
    force: Force = False,
    force_file: ForceFile = False,
    **options: Any,
) -> None:
    """Measure artifacts side by side on the same data, each in its own process: size, load
    time, memory, latency, RTF, throughput, streaming, DNSMOS and quality against a reference."""
    from speedy import runtime
    from speedy.bench.command import bench as run_bench

    if trust:
        runtime.trust_code()  # bench workers inherit it
    settings = given(options) | {
        "artifacts": artifacts,
        "output": output,
        "threads": threads,
        "force": force,
        "force_file": force_file,
    }
    run_bench(validated(BenchOptions, settings, "bench"))
