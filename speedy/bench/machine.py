"""Where a measurement was taken: machine, library versions and the speedy source's git commit."""

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import speedy
from speedy.artifact import now, tool_versions

LIBRARIES = ("numpy", "scipy", "pesq", "speechmos", "matplotlib")


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _gpu() -> str | None:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else None


def _git(*args: str) -> str | None:
    source = Path(speedy.__file__).resolve().parent.parent
    try:
        result = subprocess.run(
            ["git", *args], cwd=source, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip()


def git_state() -> dict[str, object]:
    """The commit of the speedy source tree, and whether it has uncommitted changes."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def versions() -> dict[str, str]:
    """Versions of speedy's tools and of the libraries behind the measurements."""
    found = tool_versions()
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def machine_info() -> dict[str, object]:
    """A JSON-ready description of this machine and software, with the time."""
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "created": now(),
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "gpu": _gpu(),
        "load_average": load,
        "versions": versions(),
        "git": git_state(),
    }
