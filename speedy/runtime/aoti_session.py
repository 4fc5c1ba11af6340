"""AOTInductor backend: a `.pt2` package compiled by `speedy compile --backend aoti`."""

from pathlib import Path

import torch

from speedy.artifact import Manifest
from speedy.compile.aoti import torch_release
from speedy.compile.profiles import COMPILE_REPORT
from speedy.errors import SpeedyError
from speedy.runtime.base import Session
from speedy.runtime.torch_session import TorchSession, torch_device


def check_package_target(manifest: Manifest, device: str, release: str) -> None:
    """Refuse a package compiled for another device or torch release (its kernels are native)."""
    built = manifest.reports.get(COMPILE_REPORT, {})
    if built.get("device") != device:
        raise SpeedyError(
            f"this AOTInductor package was compiled for {built.get('device')}, not {device}",
            f"use --device {built.get('device')}, or recompile with "
            f"`speedy compile --backend aoti --device {device}`",
        )
    if built.get("torch") != release:
        raise SpeedyError(
            f"this AOTInductor package was compiled with torch {built.get('torch')}, "
            f"this is torch {release}",
            "recompile it here with `speedy compile --backend aoti`",
        )


class AotiSession(TorchSession):
    """A TorchSession whose module is the compiled package (same inputs, outputs and run)."""

    def __init__(
        self, manifest: Manifest, model_file: Path, device: str = "cpu", threads: int | None = None
    ) -> None:
        Session.__init__(self, manifest, model_file)
        check_package_target(manifest, device, torch_release())
        self.device = torch_device(device)
        if threads:
            torch.set_num_threads(threads)
        try:
            self.module = torch._inductor.aoti_load_package(str(model_file))
        except Exception as exc:
            raise SpeedyError(
                f"cannot load the AOTInductor package {model_file}: {str(exc).splitlines()[0]}",
                "recompile it here with `speedy compile --backend aoti`",
            ) from exc
