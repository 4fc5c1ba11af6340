"""The end-of-run table: size, graph, parity and speed of each artifact, side by side."""

import json
from pathlib import Path

from rich.table import Table

from speedy import runtime
from speedy.artifact import Artifact
from speedy.measure import medians, rtf_samples, total_seconds
from speedy.onnx_io import graph_stats, load_onnx
from speedy.stages.base import StageContext


def _nodes(artifact: Artifact) -> str:
    simplify = artifact.manifest.reports.get("simplify")
    if simplify:
        graphs = simplify["graphs"].values()
        before = sum(g["before"]["nodes"] for g in graphs)
        return f"{before} -> {sum(g['after']['nodes'] for g in graphs)}"
    onnx = [n for n, g in artifact.manifest.graphs.items() if g.kind == "onnx"]
    if onnx:
        return str(sum(graph_stats(load_onnx(artifact.file(n), False))["nodes"] for n in onnx))
    return "-"


def _parity(artifact: Artifact) -> str:
    parity = artifact.manifest.reports.get("parity")
    if not parity:
        return "-" if artifact.manifest.lineage.stage == "torch" else "skipped"
    worst = max(
        float("inf") if v is None else v
        for c in parity["cases"]
        for v in c["max_abs_error"].values()
    )
    return f"{worst:.1e} {'ok' if parity['passed'] else 'FAIL'}"


def summarize(
    artifacts: dict[str, Artifact], ctx: StageContext, repeats: int = 3
) -> tuple[Table, dict]:
    """Measure every artifact's RTF on the same data (interleaved) and tabulate everything."""
    models = {
        name: runtime.load(a.path, threads=ctx.threads, verify=False)
        for name, a in artifacts.items()
    }
    rtf = medians(rtf_samples(models, ctx.task, ctx.examples, repeats=repeats))
    reference = next(iter(rtf.values()))
    runs = [ctx.task.inputs(e) for e in ctx.examples]
    seconds = total_seconds(ctx.task, next(iter(models.values())), runs)
    table = Table(
        title=f"{ctx.spec.recipe}: {len(ctx.examples)} clips, {seconds:.1f} s of audio, "
        f"{ctx.threads} threads"
    )
    for column in ("stage", "kind", "size MB", "nodes", "parity max|err|", "RTF", "speed-up"):
        table.add_column(column, justify="left" if column in ("stage", "kind") else "right")
    rows = {}
    for name, artifact in artifacts.items():
        rows[name] = {
            "path": str(artifact.path),
            "kind": artifact.manifest.kind,
            "size_bytes": artifact.size_bytes,
            "nodes": _nodes(artifact),
            "parity": _parity(artifact),
            "rtf": rtf[name],
            "speedup_vs_first": reference / rtf[name],
        }
        row = rows[name]
        table.add_row(
            name,
            row["kind"],
            f"{row['size_bytes'] / 1e6:.1f}",
            row["nodes"],
            row["parity"],
            f"{row['rtf']:.3f}",
            f"{row['speedup_vs_first']:.2f}x",
        )
    return table, {"audio_seconds": seconds, "threads": ctx.threads, "artifacts": rows}


def write_summary(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
