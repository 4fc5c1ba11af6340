"""A tiny seeded two-graph model for tests: a codec whose encoder frames audio, projects each
frame and picks the nearest codebook entry, and whose decoder turns codes back into audio."""

from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, PositiveInt
from torch import nn

from speedy.families import register
from speedy.families.base import Family, GraphDef
from speedy.specs import Feeds, TensorSpec


class ToyCodecParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hop: PositiveInt = 256
    channels: PositiveInt = 32
    codebook_size: PositiveInt = 64
    seed: int = 0


class Encoder(nn.Module):
    """audio (batch, 1, samples) -> codes (batch, 1, samples // hop)."""

    def __init__(self, p: ToyCodecParams) -> None:
        super().__init__()
        self.frame = nn.Conv1d(1, p.channels, p.hop, stride=p.hop)
        self.mix = nn.Conv1d(p.channels, p.channels, 3, padding=1)
        self.codebook = nn.Parameter(torch.randn(p.codebook_size, p.channels))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = self.mix(torch.tanh(self.frame(audio))).transpose(1, 2)  # (batch, frames, channels)
        distance = (
            (x * x).sum(-1, keepdim=True)
            - 2 * x @ self.codebook.T
            + (self.codebook * self.codebook).sum(-1)
        )
        return distance.argmin(-1)[:, None]


class Decoder(nn.Module):
    """codes (batch, 1, frames) -> audio (batch, 1, frames * hop)."""

    def __init__(self, p: ToyCodecParams) -> None:
        super().__init__()
        self.embedding = nn.Embedding(p.codebook_size, p.channels)
        self.mix = nn.Conv1d(p.channels, p.channels, 3, padding=1)
        self.up = nn.ConvTranspose1d(p.channels, 1, p.hop, stride=p.hop)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        x = self.embedding(codes[:, 0]).transpose(1, 2)
        return torch.tanh(self.up(torch.relu(self.mix(x))))


class ToyCodec(nn.Module):
    def __init__(self, p: ToyCodecParams) -> None:
        super().__init__()
        self.encoder, self.decoder = Encoder(p), Decoder(p)


class ToyCodecFamily(Family):
    name: ClassVar[str] = "toy_codec"
    Params: ClassVar[type[BaseModel]] = ToyCodecParams
    task: ClassVar[str] = "codec"

    def build(self) -> nn.Module:
        assert isinstance(self.params, ToyCodecParams)
        torch.manual_seed(self.params.seed)
        return ToyCodec(self.params).eval()

    def adapt_state_dict(self, state: dict[str, Any]) -> dict[str, torch.Tensor]:
        return state

    def graphs(self) -> list[GraphDef]:
        audio = TensorSpec(name="audio", dtype="float32", shape=["batch", 1, "samples"])
        codes = TensorSpec(name="codes", dtype="int64", shape=["batch", 1, "frames"])
        return [GraphDef("encoder", [audio], [codes]), GraphDef("decoder", [codes], [audio])]

    def graph_module(self, network: nn.Module, graph: str) -> nn.Module:
        return getattr(network, graph)

    def task_settings(self) -> dict[str, Any]:
        assert isinstance(self.params, ToyCodecParams)
        p = self.params
        return {"samples_per_frame": p.hop, "codebooks": 1, "codebook_size": p.codebook_size}

    def dummy_feeds(self, graph: str, sizes: dict[str, int], seed: int = 0) -> Feeds:
        assert isinstance(self.params, ToyCodecParams)
        rng, batch = np.random.default_rng(seed), sizes.get("batch", 1)
        if graph == "encoder":
            samples = sizes["frames"] * self.params.hop
            return {"audio": rng.uniform(-0.5, 0.5, (batch, 1, samples)).astype(np.float32)}
        codes = rng.integers(0, self.params.codebook_size, (batch, 1, sizes["frames"]))
        return {"codes": codes.astype(np.int64)}


register(ToyCodecFamily)
