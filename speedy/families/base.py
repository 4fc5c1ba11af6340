"""The adapter contract between speedy's generic stages and one model architecture.

A family builds the network, maps a training checkpoint onto it and names its graphs' I/O (one
graph for a vocoder; an encoder and a decoder, a prefill and a decode step...), like one
OnnxConfig per graph in Optimum. What the model is *for* (its data, front end, quality,
streaming, controls) is its task's business (`speedy.tasks`).
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel

from speedy.audio.mel import AudioSpec
from speedy.errors import SpeedyError
from speedy.specs import Feeds, TensorSpec

SINGLE = "model"  # the graph name of a single-graph model


@dataclass(frozen=True)
class GraphDef:
    """One graph a family exports: its name and I/O, with symbolic dims named as in `dims`."""

    name: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


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
    """One architecture: how to build it, load weights and name its graphs' I/O."""

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]]
    task: ClassVar[str]  # the task (speedy.tasks) its models perform
    checkpoint_fix: ClassVar[str] = (
        "check the recipe's `network` settings match the checkpoint's training config"
    )

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
    def graphs(self) -> list[GraphDef]:
        """The graphs the network exports to, in order; symbolic dims of inputs need ranges
        in the recipe's `dims`, those only in outputs may be derived."""

    def graph_module(self, network: torch.nn.Module, graph: str) -> torch.nn.Module:
        """The module computing `graph` with `network`'s weights (by default the network
        itself: a single-graph model)."""
        return network

    def task_settings(self) -> dict[str, Any]:
        """The model facts its task needs without the network (speakers, vocabulary...)."""
        return {}

    def dummy_feeds(self, graph: str, sizes: dict[str, int], seed: int = 0) -> Feeds:
        """Seeded random inputs of `graph` at the given sizes (for tracing, never for parity):
        standard normal floats; integer inputs need the family's own values."""
        rng = np.random.default_rng(seed)
        feeds = {}
        for spec in next(g for g in self.graphs() if g.name == graph).inputs:
            if not np.issubdtype(np.dtype(spec.dtype), np.floating):
                raise NotImplementedError(f"{self.name} must make the values of {spec.name}")
            feeds[spec.name] = rng.standard_normal(spec.resolve(sizes)).astype(spec.dtype)
        return feeds

    @classmethod
    def checkpoint_network(cls, checkpoint: Path) -> dict[str, Any] | None:
        """The `network:` settings a checkpoint states itself (a Hugging Face directory's
        config.json), which replace the recipe's; None where checkpoints hold tensors only."""
        return None

    def read_checkpoint(self, checkpoint: Path) -> dict[str, torch.Tensor]:
        """A checkpoint's tensors under `build()`'s parameter names."""
        return self.adapt_state_dict(read_state_dict(checkpoint))

    def misfit(self, module: torch.nn.Module, checkpoint: Path) -> str | None:
        """How a checkpoint's tensors do not fit `module` (None when they do)."""
        return state_misfit(module.state_dict(), self.read_checkpoint(checkpoint))

    def load(self, module: torch.nn.Module, checkpoint: Path) -> None:
        """Load a checkpoint into `module` strictly, with a clear error on mismatch."""
        state = self.read_checkpoint(checkpoint)
        if (misfit := state_misfit(module.state_dict(), state)) is not None:
            raise SpeedyError(
                f"checkpoint {checkpoint} does not fit the {self.name} network: {misfit}",
                self.checkpoint_fix,
            )
        module.load_state_dict(state)


def state_misfit(expected: dict[str, torch.Tensor], state: dict[str, Any]) -> str | None:
    """The keys by which `state` does not fit `expected` (None when it does): missing,
    unexpected, and of another shape (with both shapes)."""
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    misshapen = sorted(
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected.keys() & state.keys()
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or misshapen:
        return (
            f"missing {missing[:3]}, unexpected {unexpected[:3]}, "
            f"other shape (checkpoint vs network) {misshapen[:3]}"
        )
    return None
