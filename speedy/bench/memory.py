"""Resident memory of the current process: now and at its peak (Linux /proc, else getrusage)."""

import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")


def _status_bytes(field: str) -> int | None:
    if not _STATUS.is_file():
        return None
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # reported in kB
    return None


def peak_rss() -> int:
    """Highest resident set size of this process so far, in bytes."""
    found = _status_bytes("VmHWM")
    if found is not None:
        return found
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS: bytes, else kB


def current_rss() -> int:
    """Resident set size of this process now, in bytes (the peak where /proc is absent)."""
    found = _status_bytes("VmRSS")
    return peak_rss() if found is None else found
