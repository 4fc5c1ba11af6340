"""The end-of-run table: size, graph, parity, speed (RTF, or latency for a model whose outputs are
not audio) and (for audio) how each artifact sounds, side by side, with a one-line verdict on the
last one."""

import json
from pathlib import Path

from rich.table import Table

from speedy import runtime
from speedy.artifact import Artifact
from speedy.listening import Heard, listen, noise_at_equal_snr
from speedy.measure import medians, round_seconds
from speedy.onnx_io import graph_stats, load_onnx
from speedy.specs import Feeds
from speedy.stages.base import StageContext
from speedy.tasks import makes_audio


def _nodes(artifact: Artifact) -> str:
    if simplify := artifact.manifest.typed_reports().simplify:
        graphs = simplify.graphs.values()
        return f"{sum(g.before.nodes for g in graphs)} -> {sum(g.after.nodes for g in graphs)}"
    onnx = [n for n, g in artifact.manifest.graphs.items() if g.kind == "onnx"]
    if onnx:
        return str(sum(graph_stats(load_onnx(artifact.file(n), False))["nodes"] for n in onnx))
    return "-"


def _parity(artifact: Artifact) -> str:
    parity = artifact.manifest.typed_reports().parity
    if not parity:
        return "-" if artifact.manifest.lineage.stage == "torch" else "skipped"
    return f"{parity.worst:.1e} {'ok' if parity.passed else 'FAIL'}"


def summarize(
    artifacts: dict[str, Artifact], ctx: StageContext, repeats: int = 3
) -> tuple[Table, dict]:
    """Measure every artifact's speed on the same data (interleaved): its RTF, or its latency
    where the outputs are not audio; listen to its audio against the first artifact's, and
    tabulate everything."""
    models = {
        name: runtime.load(a.path, threads=ctx.threads, verify=False, trust=True)
        for name, a in artifacts.items()  # the recipe's own stage outputs
    }
    outputs: dict[str, list[Feeds]] = {}
    compute = medians(round_seconds(models, ctx.task, ctx.examples, repeats, outputs=outputs))
    first, runs = next(iter(compute)), len(ctx.examples)
    seconds = sum(ctx.task.seconds(result) for result in outputs[first])
    heard = listen(outputs, ctx.task, ctx.threads) if makes_audio(ctx.task) else {}
    seeded = ctx.spec.checkpoint is None
    audio = f"{seconds:.1f} s of audio" if seconds else "no audio: latency per run"
    table = Table(title=f"{ctx.spec.recipe}: {runs} examples, {audio}, {ctx.threads} threads")
    speed = "RTF" if seconds else "latency ms"
    columns = ["stage", "kind", "size MB", "nodes", "parity max|err|", speed, "speed-up"]
    if heard:
        relative = " (seeded model)" if seeded else ""
        columns += [f"PESQ-WB vs {first}{relative}", "DNSMOS", "sounds"]
    for column in columns:
        words = column in ("stage", "kind", "sounds")
        table.add_column(column, justify="left" if words else "right")
    rows = {}
    for name, artifact in artifacts.items():
        row = rows[name] = {
            "path": str(artifact.path),
            "kind": artifact.manifest.kind,
            "size_bytes": artifact.size_bytes,
            "nodes": _nodes(artifact),
            "parity": _parity(artifact),
            "rtf": compute[name] / seconds if seconds else None,
            "latency_ms": compute[name] / runs * 1000,
            "speedup_vs_first": compute[first] / compute[name],
        }
        cells = [
            name,
            row["kind"],
            f"{row['size_bytes'] / 1e6:.1f}",
            row["nodes"],
            row["parity"],
            f"{row['rtf']:.3f}" if seconds else f"{row['latency_ms']:.2f}",
            f"{row['speedup_vs_first']:.2f}x",
        ]
        if heard:
            verdict = "reference" if name == first else heard[name].verdict(heard[first], seeded)
            row |= {"pesq_vs_first": heard[name].pesq, "dnsmos_ovrl": heard[name].dnsmos}
            row["sounds"] = verdict
            cells += [_figure(heard[name].pesq), _figure(heard[name].dnsmos), verdict]
        table.add_row(*cells)
    last = next(reversed(rows))
    summary = {"audio_seconds": seconds or None, "threads": ctx.threads, "artifacts": rows}
    if heard and last != first:
        table.caption = _verdict(last, first, rows, heard)
        if seeded:  # what its PESQ means: noise that far from the reference scores as much
            noise = summary["noise_at_equal_snr"] = noise_at_equal_snr(outputs, ctx.task, last)
            label = f"noise at {last}'s SNR ({_figure(noise['snr_db'])} dB)"
            table.add_row(label, *["-"] * (len(columns) - 4), _figure(noise["pesq"]), "-",
                          "what its PESQ means here")  # fmt: skip
    return table, summary


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _verdict(last: str, first: str, rows: dict, heard: dict[str, Heard]) -> str:
    """One line on the run's final artifact against its first."""
    row = rows[last]
    size = row["size_bytes"] / rows[first]["size_bytes"]
    said = f"{last}: {row['speedup_vs_first']:.2f}x the speed of {first}, {size:.2f}x its size"
    if heard[last].pesq is not None:
        said += f", PESQ-WB {heard[last].pesq:.2f} against it"
    if heard[last].dnsmos is not None and heard[first].dnsmos is not None:
        said += f", DNSMOS {heard[last].dnsmos:.2f} (it: {heard[first].dnsmos:.2f})"
    return f"{said}: {row['sounds']}"


def write_summary(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
