"""Choose each group's precision: sensitivities, then the budgeted search; and the table of it."""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speedy.errors import SpeedyError
from speedy.quality import Budget
from speedy.quantize.candidates import Builder
from speedy.quantize.graph import GraphInfo
from speedy.quantize.metrics import unmet
from speedy.quantize.mixed import Evaluation, Search, ranking
from speedy.quantize.scoring import Scorer
from speedy.quantize.sensitivity import Sensitivity, measure
from speedy.stages.options import FloatWeights

WEIGHT_LABELS = {"int8": "w8", "fp16": "w16", "fp32": "w32"}


@dataclass
class Plan:
    """The groups kept in float, and how they were chosen."""

    floats: set[str]
    sensitivities: list[Sensitivity]
    tried: list[Evaluation]


def int8_groups(info: GraphInfo, floats: Collection[str]) -> list[str]:
    return [g for g in info.groups if g not in floats]


def plan_mixed(
    builder: Builder,
    scorer: Scorer,
    budgets: Sequence[Budget],
    rank_by: tuple[str, bool],
    kept: set[str],
    workdir: Path,
) -> Plan:
    """Measure sensitivities of the groups not `kept` in float, then search the float set;
    `rank_by` is the metric that ranks them and whether higher is better."""
    info, candidate = builder.info, workdir / "candidate.onnx"
    free = int8_groups(info, kept)
    sensitivities = measure(builder, scorer, free, workdir)

    def score(floats: list[str]) -> dict[str, float | None]:
        return scorer.score(builder.build(int8_groups(info, {*floats, *kept}), candidate))

    search = Search(info, budgets, score)
    chosen = search.run(ranking(sensitivities, *rank_by))
    if chosen is None:
        raise SpeedyError(
            "the quality budget is missed even with every layer in float: "
            + "; ".join(unmet(budgets, search.tried[-1].scores)),
            "relax --budget, pass --float-weights fp16 or fp32, or use --precision fp16",
        )
    return Plan({*chosen, *kept}, sensitivities, search.tried)


def table(
    info: GraphInfo,
    floats: Collection[str],
    sensitivities: Sequence[Sensitivity] = (),
    unfused: Collection[str] = (),
    float_weights: FloatWeights = "int8",
    quantized: str = "int8",
) -> list[dict[str, Any]]:
    """One row per group: op types, share of MACs, sensitivity scores, chosen precision (the
    `quantized` one, or float)."""
    scores = {s.group: s.scores for s in sensitivities}
    rows, weights = [], WEIGHT_LABELS[float_weights]
    for group in info.groups:
        layers = [layer.node for layer in info.layers if layer.group == group]
        if group in floats:
            precision = f"float ({weights})"
        elif all(node in unfused for node in layers):
            precision = f"float ({weights}, no int8 kernel)"
        else:
            precision = quantized
        rows.append(
            {
                "group": group,
                "op_types": info.op_types(group),
                "mac_share": info.share(group),
                "sensitivity": scores.get(group),
                "precision": precision,
            }
        )
    return rows
