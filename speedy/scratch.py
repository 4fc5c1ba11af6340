"""Temporary directories that say which process owns them, so that the next run removes what a
killed one (`kill -9`, a power cut) left behind, and nothing else."""

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from speedy.plain_data import json_object

PREFIX = "speedy-"
OWNER = ".speedy-writer"  # inside a scratch directory: its name and its writer's process id


def claim(directory: Path, pid: int | None = None) -> None:
    """Mark `directory` as the scratch space of process `pid` (default: this one)."""
    owner = {"directory": directory.name, "pid": pid or os.getpid()}
    (directory / OWNER).write_text(json.dumps(owner))


def abandoned(directory: Path) -> bool:
    """Whether `directory` is a scratch directory `claim`ed under its own name by a process
    that is gone (a directory speedy did not claim, or a live writer's, is never abandoned)."""
    owner_file = directory / OWNER
    if directory.is_symlink() or owner_file.is_symlink() or not owner_file.is_file():
        return False
    owner = json_object(owner_file)
    if owner.get("directory") != directory.name:
        return False
    pid = owner.get("pid")
    if type(pid) is not int or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):  # another user's live process; no such pid
        return False
    return False


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def scratch(kind: str) -> Iterator[Path]:
    """A temporary directory `speedy-KIND-PID-*`, removed afterwards; those that dead processes
    claimed are removed first."""
    root = Path(tempfile.gettempdir())
    for entry in root.glob(f"{PREFIX}*"):
        if abandoned(entry):
            remove(entry)
    with tempfile.TemporaryDirectory(prefix=f"{PREFIX}{kind}-{os.getpid()}-") as tmp:
        claim(Path(tmp))
        yield Path(tmp)
