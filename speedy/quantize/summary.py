"""The quantization table of a manifest, rendered for `speedy inspect` and `speedy quantize`."""

from typing import Any

from rich.table import Table


def quantization_table(report: dict[str, Any], graph: str) -> Table:
    """Group, op types, share of MACs, sensitivity and chosen precision of each group of one
    quantized graph."""
    rows = report["table"]
    metrics = list(next((r["sensitivity"] for r in rows if r["sensitivity"]), {}))
    title = (
        f"quantization of {graph} ({report['precision']}, per {report.get('granularity', 'block')})"
    )
    if report.get("budget"):
        title += f", budget {', '.join(report['budget'])}"
    table = Table(title=title, caption="float (w8): float compute, weights stored as int8")
    table.add_column(report.get("granularity", "group"))
    table.add_column("op types")
    table.add_column("MACs", justify="right")
    for metric in metrics:
        table.add_column(f"{metric} alone in INT8", justify="right")
    table.add_column("precision")
    for row in rows:
        scores = row["sensitivity"] or {}
        table.add_row(
            row["group"],
            row["op_types"],
            f"{row['mac_share']:.1%}",
            *(f"{scores[m]:.3f}" if scores.get(m) is not None else "-" for m in metrics),
            row["precision"],
        )
    return table
