"""The adapter contract between speedy's generic stages and one model architecture."""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel

from speedy.audio.mel import AudioSpec
from speedy.errors import SpeedyError
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
    def feeds(self, features: Sequence[np.ndarray], sizes: dict[str, int]) -> dict[str, np.ndarray]:
        """Model inputs with the given symbolic sizes, cut (or tiled) from real features."""

    @abstractmethod
    def utterance(self, features: np.ndarray) -> tuple[dict[str, np.ndarray], float]:
        """Model inputs for one whole utterance, and its audio duration in seconds."""

    @abstractmethod
    def waveform(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """The mono waveform in the model's outputs (one utterance)."""

    def load(self, module: torch.nn.Module, checkpoint: Path) -> None:
        """Load a checkpoint into `module` strictly, with a clear error on mismatch."""
        state = self.adapt_state_dict(read_state_dict(checkpoint))
        result = module.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise SpeedyError(
                f"checkpoint {checkpoint} does not fit the {self.name} network: "
                f"missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]}",
                "check the recipe's `network` settings match the checkpoint's training config",
            )

    def example_feeds(self, sizes: dict[str, int], seed: int = 0) -> dict[str, np.ndarray]:
        """Seeded random inputs of the given sizes (used for tracing, never for parity)."""
        rng = np.random.default_rng(seed)
        return {
            spec.name: rng.standard_normal(spec.resolve(sizes)).astype(spec.dtype)
            for spec in self.inputs()
        }
