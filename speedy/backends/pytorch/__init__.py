"""Eager PyTorch: the family's network with the artifact's state dict."""

from typing import ClassVar

from speedy.backends.base import Backend


class TorchBackend(Backend):
    name: ClassVar[str] = "torch"
    kind: ClassVar[str] = "torch"
    summary: ClassVar[str] = "the family's PyTorch network"
    sessions: ClassVar[str] = "speedy.backends.pytorch.session"
    tools: ClassVar[tuple[str, ...]] = ("torch",)


backend = TorchBackend()
