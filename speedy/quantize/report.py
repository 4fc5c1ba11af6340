"""The quality report every quantized artifact records against its parent, on whole utterances."""

from collections.abc import Sequence
from typing import Any

from speedy import runtime
from speedy.artifact import Artifact
from speedy.console import console
from speedy.quality import Budget
from speedy.quantize.metrics import Figures, mean_quality, unmet
from speedy.quantize.progress import steps
from speedy.stages.base import StageContext

# Past these the audio is audibly ruined, whatever the budget says (PESQ-WB 3.0 is "fair").
COLLAPSE = {"pesq": (3.0, "below"), "mel": (0.5, "above")}


def collapse(scores: Figures) -> str | None:
    """Why `scores` mean ruined audio, or None."""
    for metric, (threshold, side) in COLLAPSE.items():
        value = scores.get(metric)
        if value is not None and (value < threshold if side == "below" else value > threshold):
            return f"{metric} {value:.2f} is {side} {threshold:g}"
    return None


def _verdict(means: Figures, budgets: Sequence[Budget]) -> str:
    """`ok`, or how the figures fall short: ruined audio, a missed budget, or no budget."""
    if ruined := collapse(means):
        return f"collapsed: {ruined} against the parent"
    if missed := unmet(budgets, means):
        return f"misses the budget: {'; '.join(missed)}"
    return "ok" if budgets else "unchecked (--no-budget)"


def quality_report(
    parent: Artifact, artifact: Artifact, ctx: StageContext, budgets: Sequence[Budget]
) -> dict[str, Any]:
    """The task's metrics, and those `budgets` name, of `artifact`'s outputs against `parent`'s
    on every example of `ctx`."""
    task = ctx.task
    metrics = list(dict.fromkeys([*task.report_metrics, *(b.metric for b in budgets)]))
    reference = runtime.load(parent.path, threads=ctx.threads, verify=False)
    candidate = runtime.load(artifact.path, threads=ctx.threads, verify=False)
    rows = []
    with steps("quality against the parent", len(ctx.examples)) as advance:
        for example in ctx.examples:
            inputs = task.inputs(example)
            expected = task.run(reference, inputs)
            rows.append(task.evaluate(expected, candidate, inputs, metrics))
            advance()
    means = mean_quality(rows)
    verdict = _verdict(means, budgets)
    figures = ", ".join(f"{k} {v:.3f}" for k, v in means.items() if v is not None)
    colour = "green" if verdict == "ok" else "red"
    budget = ", ".join(map(str, budgets)) or "none"
    console.print(
        f"  quality vs parent ({len(rows)} examples, budget {budget}): {figures}: "
        f"[{colour}]{verdict}[/]"
    )
    return {
        "against": "parent",
        "parent_digest": parent.manifest.digest,
        "budget": [str(b) for b in budgets],
        "examples": len(rows),
        "metrics": means,
        "per_example": rows,
        "verdict": verdict,
    }
