"""Temporary directories named after the process that owns them, so that the next run removes
what a killed one (`kill -9`, a power cut) left behind."""

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PREFIX = "speedy-"


def orphaned(name: str, prefix: str) -> bool:
    """Whether `name` is `prefix`, a process id, then '.' or '-', and that process is gone."""
    if not name.startswith(prefix):
        return False
    digits = name[len(prefix) :].replace("-", ".").split(".")[0]
    if not digits.isdigit() or int(digits) == os.getpid():
        return False
    try:
        os.kill(int(digits), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    return False


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def scratch(kind: str) -> Iterator[Path]:
    """A temporary directory `speedy-KIND-PID-*`, removed afterwards; those of dead processes
    are removed first."""
    root = Path(tempfile.gettempdir())
    for entry in root.glob(f"{PREFIX}*-*"):
        prefix = entry.name[: entry.name.index("-", len(PREFIX)) + 1]
        if orphaned(entry.name, prefix):
            remove(entry)
    with tempfile.TemporaryDirectory(prefix=f"{PREFIX}{kind}-{os.getpid()}-") as tmp:
        yield Path(tmp)
