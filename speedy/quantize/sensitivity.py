"""Sensitivity: the quality of the model with one group in INT8 and everything else in float."""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from speedy.console import console, shown
from speedy.quantize.candidates import Builder
from speedy.quantize.progress import steps
from speedy.quantize.scoring import Scorer


@dataclass
class Sensitivity:
    """One group's share of the MACs and the quality with only that group in INT8."""

    group: str
    op_types: str
    mac_share: float
    scores: dict[str, float | None]

    def harm(self, metric: str, higher_is_better: bool) -> float:
        """How much worse quantizing this group alone makes `metric` (higher: worse; an
        unmeasured value counts as the worst)."""
        value = self.scores[metric]
        if value is None:
            return math.inf
        return -value if higher_is_better else value


def measure(
    builder: Builder, scorer: Scorer, groups: Sequence[str], workdir: Path
) -> list[Sensitivity]:
    """Score each group alone in INT8 (one ORT session per group) on the held-out probes."""
    info, results = builder.info, []
    with steps("sensitivity, one group in INT8 at a time", len(groups)) as advance:
        for group in groups:
            scores = scorer.score(builder.build([group], workdir / "candidate.onnx"))
            results.append(Sensitivity(group, info.op_types(group), info.share(group), scores))
            figures = ", ".join(f"{k} {v:.3f}" for k, v in scores.items() if v is not None)
            console.print(
                f"  {shown(group)} ({info.share(group):.1%} of MACs) alone in INT8: {figures}"
            )
            advance(group)
    return results
