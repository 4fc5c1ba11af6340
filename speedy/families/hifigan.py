"""HiFi-GAN V1-style generator (Kong et al. 2020): mel -> waveform.

State-dict compatible with the official checkpoints: their weight-normed convs
(`weight_g`, `weight_v`) are folded into plain weights when loaded, so the network
itself has no weight norm to remove before export. Its receptive field, derived from the layers,
is recorded for the vocoder task, which streams with it as context.
"""

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, model_validator
from torch import nn

from speedy.audio.mel import AudioSpec
from speedy.errors import SpeedyError
from speedy.families.base import SINGLE, Family, GraphDef
from speedy.specs import TensorSpec

LRELU_SLOPE = 0.1
EDGE_KERNEL = 7  # conv_pre's and conv_post's


class HiFiGANParams(BaseModel):
    """Generator hyper-parameters, named as in HiFi-GAN's training config."""

    model_config = ConfigDict(extra="forbid")

    upsample_rates: list[int]
    upsample_kernel_sizes: list[int]
    upsample_initial_channel: int
    resblock_kernel_sizes: list[int]
    resblock_dilation_sizes: list[list[int]]
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> "HiFiGANParams":
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ValueError("upsample_rates and upsample_kernel_sizes differ in length")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ValueError("resblock_kernel_sizes and resblock_dilation_sizes differ in length")
        return self


def _same_padding(kernel: int, dilation: int = 1) -> int:
    return (kernel * dilation - dilation) // 2


class ResBlock(nn.Module):
    """Three pairs of dilated convs with residual connections (HiFi-GAN ResBlock1)."""

    def __init__(self, channels: int, kernel: int, dilations: list[int]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, dilation=d, padding=_same_padding(kernel, d))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, padding=_same_padding(kernel)) for _ in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class Generator(nn.Module):
    """Mel (batch, n_mels, frames) -> audio (batch, 1, frames * prod(upsample_rates))."""

    def __init__(self, params: HiFiGANParams, n_mels: int) -> None:
        super().__init__()
        channels = params.upsample_initial_channel
        self.conv_pre = nn.Conv1d(n_mels, channels, EDGE_KERNEL, padding=_same_padding(EDGE_KERNEL))
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (rate, kernel) in enumerate(
            zip(params.upsample_rates, params.upsample_kernel_sizes, strict=True)
        ):
            c_in, c_out = channels // 2**i, channels // 2 ** (i + 1)
            self.ups.append(nn.ConvTranspose1d(c_in, c_out, kernel, rate, (kernel - rate) // 2))
            self.resblocks.extend(
                ResBlock(c_out, k, d)
                for k, d in zip(
                    params.resblock_kernel_sizes, params.resblock_dilation_sizes, strict=True
                )
            )
        self.conv_post = nn.Conv1d(c_out, 1, EDGE_KERNEL, padding=_same_padding(EDGE_KERNEL))
        self.kernels_per_stage = len(params.resblock_kernel_sizes)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            blocks = self.resblocks[i * self.kernels_per_stage : (i + 1) * self.kernels_per_stage]
            x = sum(block(x) for block in blocks) / self.kernels_per_stage
        # The original uses leaky_relu's default slope (0.01) here, not LRELU_SLOPE.
        return torch.tanh(self.conv_post(F.leaky_relu(x)))


Span = tuple[int, int]  # first and last position a layer's outputs depend on


def _conv_span(span: Span, kernel: int, dilation: int = 1) -> Span:
    """The inputs of a same-padded conv that outputs `span` depend on."""
    pad = _same_padding(kernel, dilation)
    return span[0] - pad, span[1] + (kernel - 1) * dilation - pad


def _resblock_span(span: Span, kernel: int, dilations: list[int]) -> Span:
    for dilation in dilations:
        span = _conv_span(_conv_span(span, kernel), kernel, dilation)
    return span


def receptive_field(params: HiFiGANParams) -> dict[str, int]:
    """Mel frames before (`left`) and after (`right`) a frame that its audio depends on, walked
    back from that audio through conv_post, each stage's widest resblock and transposed conv
    (last stage first), and conv_pre."""
    hop = int(np.prod(params.upsample_rates))
    span = _conv_span((0, hop - 1), EDGE_KERNEL)  # frame 0's samples, before conv_post
    blocks = [*zip(params.resblock_kernel_sizes, params.resblock_dilation_sizes, strict=True)]
    stages = [*zip(params.upsample_rates, params.upsample_kernel_sizes, strict=True)]
    for rate, kernel in reversed(stages):
        spans = [_resblock_span(span, k, dilations) for k, dilations in blocks]
        first, last = min(s[0] for s in spans), max(s[1] for s in spans)
        pad = (kernel - rate) // 2  # output o of input i: i * rate - pad + 0 .. kernel - 1
        span = -((kernel - 1 - pad - first) // rate), (last + pad) // rate
    first, last = _conv_span(span, EDGE_KERNEL)
    return {"left": -first, "right": last}


def fold_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace each `weight_g`/`weight_v` pair by the plain `weight` it stands for."""
    folded = {k: v for k, v in state.items() if not k.endswith(("weight_g", "weight_v"))}
    for key in state:
        if key.endswith("weight_g"):
            prefix = key[: -len("weight_g")]
            g, v = state[key], state[prefix + "weight_v"]
            norm = v.flatten(1).norm(dim=1).reshape(-1, *([1] * (v.dim() - 1)))
            folded[prefix + "weight"] = g * v / norm
    return folded


class HiFiGAN(Family):
    """Adapter for HiFi-GAN generators (V1/V2/V3 differ only in `network` settings)."""

    name: ClassVar[str] = "hifigan"
    Params: ClassVar[type[BaseModel]] = HiFiGANParams
    task: ClassVar[str] = "vocoder"

    def __init__(self, params: BaseModel, audio: AudioSpec) -> None:
        super().__init__(params, audio)
        assert isinstance(params, HiFiGANParams)
        hop = int(np.prod(params.upsample_rates))
        if hop != audio.hop_length:
            raise SpeedyError(
                f"upsample_rates multiply to {hop} but the audio hop_length is {audio.hop_length}",
                "make prod(network.upsample_rates) equal audio.hop_length in the recipe",
            )

    def build(self) -> torch.nn.Module:
        assert isinstance(self.params, HiFiGANParams)
        torch.manual_seed(self.params.seed)
        return Generator(self.params, self.audio.n_mels).eval()

    def adapt_state_dict(self, state: dict[str, Any]) -> dict[str, torch.Tensor]:
        return fold_weight_norm(state.get("generator", state))

    def task_settings(self) -> dict[str, Any]:
        assert isinstance(self.params, HiFiGANParams)
        return {"receptive_field": receptive_field(self.params)}

    def graphs(self) -> list[GraphDef]:
        mel = TensorSpec(name="mel", dtype="float32", shape=["batch", self.audio.n_mels, "frames"])
        audio = TensorSpec(name="audio", dtype="float32", shape=["batch", 1, "samples"])
        return [GraphDef(SINGLE, [mel], [audio])]
