"""Where a measurement was taken: machine, libraries and code version, for benchmark JSON."""

import json
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path

from speedy.artifact import now, tool_versions

SIMD_LEVELS = ("avx512f", "avx2", "avx", "sse4_2", "asimd")  # widest first


def _cpuinfo(field: str) -> str | None:
    """The first value of `field` in /proc/cpuinfo, where there is one."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.split(":", 1)[0].strip() == field:
                return line.split(":", 1)[1].strip()
    return None


def cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or "unknown"


def simd() -> str | None:
    """The CPU's widest vector extension (AVX-512 or AVX2 moves FP32 kernel speeds a lot)."""
    flags = set((_cpuinfo("flags") or _cpuinfo("Features") or "").split())
    return next((level for level in SIMD_LEVELS if level in flags), None)


def git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None


def machine_info() -> dict:
    """CPU and its vector extension, cores, memory, OS, Python, tool versions, git commit and
    time of measurement."""
    memory = (
        os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    )
    return {
        "cpu": cpu_model(),
        "simd": simd(),
        "cores": os.cpu_count(),
        "memory_gib": round(memory / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "tools": tool_versions(),
        "git_commit": git_commit(),
        "measured_at": now(),
    }


def write_result(path: Path, result: dict, headline: Sequence[str] = ()) -> None:
    """Write a benchmark's result as JSON to `path`; print its `headline` entries and the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    if headline:
        print(json.dumps({key: result[key] for key in headline}, indent=2))
    print(f"wrote {path}")
