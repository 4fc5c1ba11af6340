"""The adapter contract between speedy's generic stages and one model architecture."""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel

from speedy.audio.cache import FeatureCache
from speedy.audio.mel import AudioSpec
from speedy.data_source import DEFAULT_CLIPS, audio_features
from speedy.errors import SpeedyError
from speedy.quality import compare
from speedy.specs import TensorSpec


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, loaded without running any code from it."""
    if not path.is_file():
        raise SpeedyError(
            f"checkpoint not found: {path}", "pass --checkpoint with an existing file"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SpeedyError(
            f"checkpoint {path} is not a readable PyTorch file ({type(exc).__name__})",
            "re-download or re-save it with torch.save(model.state_dict(), path)",
        ) from exc
    if not isinstance(state, dict):
        raise SpeedyError(f"checkpoint {path} holds no state dict", "save model.state_dict()")
    return state


class Family(ABC):
    """One architecture: how to build it, load weights, name its I/O and feed it real data."""

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]]
    quality_metric: ClassVar[str]
    # What the model's inputs are made from and what its outputs are (a vocoder: mel -> audio).
    consumes: ClassVar[Literal["mel", "text"]] = "mel"
    produces: ClassVar[Literal["audio", "mel"]] = "audio"
    default_data: ClassVar[Path] = DEFAULT_CLIPS  # what `read_data` reads unless told otherwise

    def __init__(self, params: BaseModel, audio: AudioSpec) -> None:
        self.params = params
        self.audio = audio

    @abstractmethod
    def build(self) -> torch.nn.Module:
        """The network with seeded initial weights, ready for inference (no weight norm)."""

    @abstractmethod
    def adapt_state_dict(self, state: dict[str, Any]) -> dict[str, torch.Tensor]:
        """A training checkpoint's tensors mapped onto `build()`'s parameter names."""

    @abstractmethod
    def inputs(self) -> list[TensorSpec]:
        """Graph inputs, with symbolic dims named as in the recipe's `dims`."""

    @abstractmethod
    def outputs(self) -> list[TensorSpec]:
        """Graph outputs; symbolic dims here may be derived (no range of their own)."""

    @abstractmethod
    def features(self, audio: np.ndarray) -> np.ndarray:
        """The front end: mono audio at the model's rate -> model features."""

    @abstractmethod
    def feeds(self, features: Sequence[Any], sizes: dict[str, int]) -> dict[str, np.ndarray]:
        """Model inputs with the given symbolic sizes, cut (or tiled) from real examples (those
        of `read_data`: audio features, sentences, ...)."""

    @abstractmethod
    def utterance(self, features: Any) -> tuple[dict[str, np.ndarray], float | None]:
        """Model inputs for one whole utterance (one example of `read_data`), and its audio
        duration in seconds (None when only the outputs tell: see `seconds`)."""

    @abstractmethod
    def waveform(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """The mono waveform in the model's outputs (one utterance)."""

    def read_data(self, source: Path, cache: FeatureCache) -> list[Any]:
        """The examples in a data source that `feeds` and `utterance` take; by default the
        front-end features of its audio (or .npy) files, cached by content hash."""
        return audio_features(source, self, cache)

    def seconds(self, outputs: dict[str, np.ndarray]) -> float:
        """Seconds of audio that the outputs of one utterance stand for."""
        return self.waveform(outputs).size / self.audio.sample_rate

    def quality(
        self, reference: dict[str, np.ndarray], test: dict[str, np.ndarray]
    ) -> dict[str, float]:
        """`quality_metric` of `test` outputs against `reference` outputs (one utterance)."""
        return compare(
            self.waveform(reference),
            self.waveform(test),
            self.audio.sample_rate,
            [self.quality_metric],
        )

    def load(self, module: torch.nn.Module, checkpoint: Path) -> None:
        """Load a checkpoint into `module` strictly, with a clear error on mismatch."""
        state = self.adapt_state_dict(read_state_dict(checkpoint))
        expected = module.state_dict()
        missing = sorted(expected.keys() - state.keys())
        unexpected = sorted(state.keys() - expected.keys())
        shared = expected.keys() & state.keys()
        misshapen = [k for k in shared if state[k].shape != expected[k].shape]
        if missing or unexpected or misshapen:
            raise SpeedyError(
                f"checkpoint {checkpoint} does not fit the {self.name} network: missing "
                f"{missing[:3]}, unexpected {unexpected[:3]}, other shape {sorted(misshapen)[:3]}",
                "check the recipe's `network` settings match the checkpoint's training config",
            )
        module.load_state_dict(state)

    def example_feeds(self, sizes: dict[str, int], seed: int = 0) -> dict[str, np.ndarray]:
        """Seeded random inputs of the given sizes (used for tracing, never for parity)."""
        rng = np.random.default_rng(seed)
        return {
            spec.name: rng.standard_normal(spec.resolve(sizes)).astype(spec.dtype)
            for spec in self.inputs()
        }
