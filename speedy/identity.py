"""speedy's identity for caches and stage reuse: its version plus a digest of its own code."""

import hashlib
from functools import cache
from pathlib import Path

from speedy import __version__


def source_digest(root: Path) -> str:
    """SHA-256 (hex) over the paths and contents of the Python files below `root`."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@cache
def code_version() -> str:
    """The version and a digest of speedy's sources: it changes whenever speedy's code does,
    released or not, so nothing an older speedy built or cached is taken as current."""
    return f"{__version__}+{source_digest(Path(__file__).parent)[:16]}"
