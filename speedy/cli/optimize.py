"""Commands that make an artifact from another: `simplify`, `quantize` and `compile`, each with
the flags of its stage's typed options (and `compile` with those of every backend)."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from speedy.backends.base import backend, compile_targets
from speedy.cli.app import app
from speedy.cli.params import (
    Data,
    Force,
    Graphs,
    NoVerify,
    Output,
    SkipParity,
    Threads,
    given,
    with_flags,
)
from speedy.console import out, shown
from speedy.stages.options import CompileOptions, QuantizeOptions, SimplifyOptions

if TYPE_CHECKING:
    from speedy.artifact import Artifact


def _derive(
    stage: str,
    source: Path,
    output: Path,
    settings: dict[str, Any],
    data: Path | None,
    threads: int,
    no_verify: bool,
    force: bool,
) -> "Artifact":
    """The artifact `stage` makes of the one at `source`, written to `output`."""
    from speedy.artifact import Artifact
    from speedy.outputs import check_writable
    from speedy.pipeline import context_for, make_stage
    from speedy.stages.base import execute

    check_writable(output, force)
    stage_ = make_stage(stage, settings)
    parent = Artifact.open(source, verify=not no_verify)
    ctx = context_for(parent.manifest.model, data, threads)
    return execute(stage_, parent, output, ctx, force)


@app.command()
@with_flags(SimplifyOptions)
def simplify(
    source: Annotated[Path, typer.Argument(help="ONNX artifact directory.")],
    output: Output,
    graph: Graphs = None,
    data: Data = None,
    threads: Threads = 2,
    skip_parity: SkipParity = False,
    no_verify: NoVerify = False,
    force: Force = False,
    **options: Any,
) -> None:
    """Simplify an ONNX artifact's graphs, keeping dynamic dims, checked against the parent."""
    settings = given(options) | {"verify": not skip_parity, "graphs": graph or []}
    artifact = _derive("simplify", source, output, settings, data, threads, no_verify, force)
    report = artifact.manifest.typed_reports().simplify
    assert report is not None
    for name, sizes in report.graphs.items():
        before, after = sizes.before, sizes.after
        where = f" {shown(name)}" if len(artifact.manifest.graphs) > 1 else ""
        out.print(
            f"wrote {shown(artifact.path)}{where}: nodes {before.nodes} -> {after.nodes}, "
            f"initializers {before.initializers} -> {after.initializers}, "
            f"weights {before.weight_bytes / 1e6:.1f} -> {after.weight_bytes / 1e6:.1f} MB"
        )


@app.command()
@with_flags(QuantizeOptions)
def quantize(
    source: Annotated[Path, typer.Argument(help="Float32 ONNX artifact directory.")],
    output: Output,
    graph: Graphs = None,
    data: Data = None,
    threads: Threads = 2,
    no_verify: NoVerify = False,
    force: Force = False,
    **options: Any,
) -> None:
    """Quantize an ONNX artifact's graphs (INT8, FP16, or mixed under an audio-quality budget)
    and record its quality against the parent."""
    from speedy.quantize.summary import quantization_table

    settings = given(options) | {"graphs": graph or []}
    artifact = _derive("quantize", source, output, settings, data, threads, no_verify, force)
    reports = artifact.manifest.typed_reports()
    assert reports.quantize is not None and reports.quality is not None
    for name, report in reports.quantize.items():
        if report.table is not None:
            out.print(quantization_table(report, name))
    ratios = " / ".join(f"{report.size_ratio:.0%}" for report in reports.quantize.values())
    quality = reports.quality
    figures = ", ".join(f"{k} {v:.3f}" for k, v in quality.metrics.items() if v is not None)
    out.print(
        f"wrote {shown(artifact.path)} ({artifact.manifest.precision}, "
        f"{artifact.size_bytes / 1e6:.1f} MB, {ratios} of the parent): {figures}; "
        f"{quality.verdict}"
    )


def _backends_help() -> str:
    return "; ".join(f"{name}: {backend(name).summary}" for name in compile_targets()) + "."


@app.command(name="compile")
@with_flags(
    CompileOptions,
    *(backend(name).Options for name in compile_targets()),
    exclude=frozenset({"backend"}),
)
def compile_(
    source: Annotated[Path, typer.Argument(help="Artifact: ONNX, or torch for aoti.")],
    output: Output,
    backend_name: Annotated[
        Literal[tuple(compile_targets())],  # type: ignore[valid-type]
        typer.Option("--backend", help=_backends_help()),
    ] = "ort",
    graph: Graphs = None,
    data: Data = None,
    threads: Threads = 2,
    skip_parity: SkipParity = False,
    no_verify: NoVerify = False,
    force: Force = False,
    **options: Any,
) -> None:
    """Compile an artifact's graphs, with optimization profiles derived from real data, checked."""
    settings = given(options) | {
        "backend": backend_name,
        "verify": not skip_parity,
        "graphs": graph or [],
    }
    artifact = _derive("compile", source, output, settings, data, threads, no_verify, force)
    manifest = artifact.manifest
    out.print(
        f"wrote {shown(artifact.path)} ({manifest.kind}, {manifest.precision}, "
        f"{artifact.size_bytes / 1e6:.1f} MB)"
    )
    for report in (manifest.typed_reports().compile or {}).values():
        if covered := report.profile_data:
            out.print(f"profiles cover {covered.covered} of {covered.clips} clips")
