"""`speedy inspect`: an artifact's manifest, readable (imports no backend runtime, torch or
family)."""

from pathlib import Path
from typing import Annotated

import typer

from speedy.cli.app import app
from speedy.cli.params import NoVerify
from speedy.console import out, shown


@app.command()
def inspect(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory.")],
    no_verify: NoVerify = False,
) -> None:
    """Print an artifact's manifest: graphs and their I/O, dims, checkpoint, lineage and reports
    (and the quantization table of each quantized graph)."""
    from speedy.artifact import Artifact
    from speedy.model_spec import IMPORTED_FAMILY
    from speedy.quantize.summary import quantization_table

    manifest = Artifact.open(artifact, verify=not no_verify).manifest
    out.print_json(manifest.model_dump_json())
    checkpoint = manifest.model.checkpoint
    label = "source" if manifest.model.family == IMPORTED_FAMILY else "checkpoint"
    out.print(f"{label}: {shown(checkpoint.describe()) if checkpoint else 'none (seeded weights)'}")
    for name, entry in manifest.graphs.items():
        files = shown(", ".join(entry.files))
        out.print(f"graph {shown(name)}: {entry.kind}, {shown(entry.precision)}, {files}")
    for name, report in (manifest.typed_reports().quantize or {}).items():
        if report.table is not None:
            out.print(quantization_table(report, name))
