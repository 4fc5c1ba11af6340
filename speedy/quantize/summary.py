"""The quantization table of a manifest, rendered for `speedy inspect` and `speedy quantize`."""

from rich.table import Table

from speedy.console import shown
from speedy.reports import QuantizedGraph

STORAGE = {"w8": "int8 (w8)", "w16": "float16 (w16)", "w32": "float32 (w32)"}


def quantization_table(report: QuantizedGraph, graph: str) -> Table:
    """Group, op types, share of MACs, sensitivity and chosen precision of each group of one
    quantized graph."""
    rows = report.table or []
    metrics = list(next((r.sensitivity for r in rows if r.sensitivity), {}))
    title = f"quantization of {graph} ({report.precision}, per {report.granularity})"
    if report.budget:
        title += f", budget {', '.join(report.budget)}"
    stored = [text for label, text in STORAGE.items() if any(label in r.precision for r in rows)]
    caption = f"float: float compute, weights stored as {', '.join(stored)}"
    table = Table(title=shown(title), caption=caption)
    table.add_column(report.granularity)
    table.add_column("op types")
    table.add_column("MACs", justify="right")
    for metric in metrics:
        table.add_column(f"{metric} alone in INT8", justify="right")
    table.add_column("precision")
    for row in rows:
        scores = row.sensitivity or {}
        table.add_row(
            shown(row.group),
            shown(row.op_types),
            f"{row.mac_share:.1%}",
            *(f"{scores[m]:.3f}" if scores.get(m) is not None else "-" for m in metrics),
            shown(row.precision),
        )
    return table
