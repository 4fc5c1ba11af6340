"""The bench's record of where it ran: `speedy.machine`'s, plus GPU, load and library versions."""

import os
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from speedy.machine import machine_info

LIBRARIES = ("numpy", "scipy", "pesq", "speechmos", "matplotlib")


def _gpu() -> str | None:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else None


def _dirty() -> bool | None:
    """Whether the speedy source tree has uncommitted changes (None outside a git checkout)."""
    try:
        result = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).parent,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(result.stdout.strip())


def bench_machine() -> dict[str, Any]:
    """Machine, tools and commit (see `speedy.machine`), the GPU, the load average (the machine
    may be shared), library versions behind the quality figures, and uncommitted changes."""
    info = machine_info()
    for name in LIBRARIES:
        try:
            info["tools"][name] = version(name)
        except PackageNotFoundError:
            continue
    info["gpu"] = _gpu()
    info["load_average"] = (
        [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    )
    info["git_dirty"] = _dirty()
    return info
