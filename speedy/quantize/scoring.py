"""Score candidate models on held-out probe crops against the float model's outputs.

The float model runs once; each candidate gets one ORT session and one pass over the probes.
"""

from collections.abc import Sequence
from pathlib import Path

from speedy.artifact import Manifest
from speedy.quantize.crops import Crop
from speedy.quantize.metrics import mean_quality, output_quality
from speedy.runtime.onnx_session import OnnxSession


class Scorer:
    """Quality of candidate model files, measured with `metrics` on `probes`."""

    def __init__(
        self,
        manifest: Manifest,
        reference: Path,
        probes: Sequence[Crop],
        metrics: Sequence[str],
        threads: int,
    ) -> None:
        self.manifest = manifest
        self.family = manifest.model.adapter()
        self.probes = list(probes)
        self.metrics = list(dict.fromkeys(metrics))
        self.threads = threads
        session = OnnxSession(manifest, reference, threads=threads)
        self.expected = [session.run(crop.feeds) for crop in self.probes]

    def score(self, model: Path) -> dict[str, float]:
        """Mean of each metric over the probes."""
        session = OnnxSession(self.manifest, model, threads=self.threads)
        return mean_quality(
            [
                output_quality(self.family, expected, session.run(crop.feeds), self.metrics)
                for crop, expected in zip(self.probes, self.expected, strict=True)
            ]
        )
