"""Score candidate graphs on held-out probes against the float model's outputs.

The float model runs once; each candidate (one graph's file, the model's other graphs as they
are) gets one ORT session and one pass over the probes, run the task's way end to end.
"""

from collections.abc import Sequence
from pathlib import Path

from speedy.backends.ort.session import OnnxSession
from speedy.quantize.crops import Crop
from speedy.quantize.metrics import mean_quality
from speedy.runtime import Model
from speedy.tasks import Figures, Task


class Scorer:
    """Quality of candidate files of one graph, measured with `metrics` on `probes`."""

    def __init__(
        self,
        task: Task,
        model: Model,
        graph: str,
        probes: Sequence[Crop],
        metrics: Sequence[str],
        threads: int,
    ) -> None:
        self.task, self.model, self.graph = task, model, graph
        self.probes = list(probes)
        self.metrics = list(dict.fromkeys(metrics))
        self.threads = threads
        self.expected = [task.run(model, crop.feeds) for crop in self.probes]

    def score(self, candidate: Path) -> dict[str, float | None]:
        """Mean of each metric over the probes."""
        reference = self.model[self.graph]
        session = OnnxSession(
            self.graph, reference.graph, candidate, reference.dims, threads=self.threads
        )
        model = self.model.replaced(self.graph, session)
        rows: list[Figures] = [
            self.task.evaluate(expected, model, crop.feeds, self.metrics)
            for crop, expected in zip(self.probes, self.expected, strict=True)
        ]
        return mean_quality(rows)
