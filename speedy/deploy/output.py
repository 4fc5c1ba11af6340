"""A deployment directory (a Ray Serve config, a Triton model repository) written as every speedy
output is: in a scratch directory renamed into place, replaced only with --force and only when
its listing proves speedy wrote it."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from speedy.artifact import directory_files
from speedy.outputs import atomic_dir

LISTING = "speedy-deploy.json"


@contextmanager
def deployment_dir(out: Path, force: bool, about: dict[str, Any]) -> Iterator[Path]:
    """Yield the directory to fill; once filled, list its files (with `about`) and publish it."""
    with atomic_dir(out, force, LISTING) as work:
        yield work
        listing = {**about, "files": directory_files(work, LISTING)}
        (work / LISTING).write_text(json.dumps(listing, indent=2) + "\n")
