"""AOTInductor sessions: `.pt2` packages compiled by `speedy compile --backend aoti`."""

from collections.abc import Sequence

import torch

from speedy.artifact import Artifact
from speedy.backends.aoti.section import AotiSection
from speedy.backends.pytorch.session import TorchSession
from speedy.errors import SpeedyError
from speedy.runtime.base import Session


def torch_release() -> str:
    """This torch's release number without the build tag (2.13.0, not 2.13.0+cpu)."""
    return torch.__version__.split("+")[0]


def check_package_target(section: AotiSection, device: str, release: str) -> None:
    """Refuse a package compiled for another device or torch release (its kernels are native)."""
    if section.device != device:
        raise SpeedyError(
            f"this AOTInductor package was compiled for {section.device}, not {device}",
            f"use --device {section.device}, or recompile with "
            f"`speedy compile --backend aoti --device {device}`",
        )
    if section.torch != release:
        raise SpeedyError(
            f"this AOTInductor package was compiled with torch {section.torch}, "
            f"this is torch {release}",
            "recompile it here with `speedy compile --backend aoti`",
        )


def open_graphs(
    artifact: Artifact, names: Sequence[str], device: str, threads: int | None
) -> dict[str, Session]:
    """A session per named package: a TorchSession whose module is the compiled package."""
    if threads:
        torch.set_num_threads(threads)
    sessions: dict[str, Session] = {}
    for name in names:
        graph, file = artifact.manifest.graphs[name], artifact.file(name)
        assert isinstance(graph.runtime, AotiSection)
        check_package_target(graph.runtime, device, torch_release())
        try:
            module = torch._inductor.aoti_load_package(str(file))
        except Exception as exc:
            raise SpeedyError(
                f"cannot load the AOTInductor package {file}: {str(exc).splitlines()[0]}",
                "recompile it here with `speedy compile --backend aoti`",
            ) from exc
        sessions[name] = TorchSession(name, graph, artifact.manifest.model.dims, module, device)
    return sessions
