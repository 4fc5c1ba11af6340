"""Importable model factories for `--model module:function` tests."""

import torch

from speedy.families.network import build_network
from speedy.recipe import load_recipe
from tests.conftest import TINY_RECIPE


def tiny_with_weight_norm() -> torch.nn.Module:
    """The tiny generator with weight norm on every conv, as in training code."""
    module = build_network(load_recipe(str(TINY_RECIPE)).model_spec())
    for child in module.modules():
        if isinstance(child, torch.nn.Conv1d | torch.nn.ConvTranspose1d):
            torch.nn.utils.parametrizations.weight_norm(child)
    return module


@torch.library.custom_op("speedy_test::mystery", mutates_args=())
def mystery(x: torch.Tensor) -> torch.Tensor:
    """An operator no ONNX exporter knows."""
    return x * 2


@mystery.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


class Mystery(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mystery(x) + 1


class WithMystery(torch.nn.Module):
    """A vocoder-shaped network whose `post` submodule calls the unknown operator."""

    def __init__(self) -> None:
        super().__init__()
        self.up = torch.nn.ConvTranspose1d(80, 1, 512, 256, 128)
        self.post = Mystery()

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.post(self.up(mel)))


def with_unsupported_op() -> torch.nn.Module:
    return WithMystery()
