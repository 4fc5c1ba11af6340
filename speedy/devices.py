"""The one place that decides what a device name means and whether it is usable here."""

from typing import Literal, get_args

from speedy.errors import SpeedyError

Device = Literal["cpu", "cuda"]
DEVICES: tuple[str, ...] = get_args(Device)


def check_device(device: str) -> Device:
    """`device` as a Device, or a clear error naming the ones there are."""
    if device not in DEVICES:
        raise SpeedyError(f"unknown device '{device}'", f"use one of: {', '.join(DEVICES)}")
    return device  # type: ignore[return-value]


def require_cuda() -> None:
    """A clear error unless PyTorch sees a CUDA GPU (torch is imported only here, when asked)."""
    import torch

    if not torch.cuda.is_available():
        raise SpeedyError(
            "--device cuda: no CUDA GPU is available here (PyTorch sees none)",
            "use --device cpu, or run on a machine with an NVIDIA GPU and driver",
        )
