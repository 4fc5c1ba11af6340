"""Outputs written so that nothing is lost: into a writer's own scratch directory beside the
target, renamed into place when complete, and replacing an existing output only with `--force`
and only when speedy can prove it wrote it.

Proof of ownership, never a name pattern:
- a directory output (artifact, bench report) holds a marker file (`speedy.json`, `bench.json`)
  whose `files` lists every other file in it with its SHA-256, and nothing else is there;
- a file output is one speedy's own writer tagged (a WAV's `software` field, a baseline's
  `format`), unless the user names `--force-file`;
- a writer's scratch directory holds `.speedy-writer` naming that directory and the writer's
  process id (`speedy.scratch.claim`): only such a directory of a dead process is swept.
"""

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from speedy import interrupt
from speedy.artifact import MANIFEST, directory_files
from speedy.errors import SpeedyError
from speedy.plain_data import json_object
from speedy.scratch import abandoned, claim, remove

NEW, OLD = "new", "old"  # inside a writer's scratch directory: the output, and the one it replaces


def followed(out: Path) -> Path:
    """`out`, or the path its symbolic link points to (the output is written there)."""
    return out.resolve() if out.is_symlink() else out


def _refuse_current_directory(out: Path) -> None:
    if out.name in ("", ".", "..") or Path.cwd().is_relative_to(out.resolve()):
        raise SpeedyError(
            f"output {out} is the current directory or one that holds it",
            "name a new path for the output, e.g. -o out/model",
        )


def unowned(directory: Path, marker: str) -> str | None:
    """Why speedy cannot prove it wrote `directory` (None when it can): `marker` must list every
    other file there, each with the digest it has now."""
    listing = directory / marker
    if listing.is_symlink() or not listing.is_file():
        return f"no {marker} in it"
    listed = json_object(listing).get("files")
    if not isinstance(listed, dict):
        return f"its {marker} lists no files"
    found = directory_files(directory, marker)
    if extra := sorted(found.keys() - listed.keys()):
        return f"it holds {extra[0]}, which its {marker} does not list"
    if changed := sorted(n for n, digest in found.items() if listed[n] != digest):
        return f"{changed[0]} changed since speedy wrote it"
    return None


def check_writable(out: Path, force: bool, marker: str = MANIFEST) -> None:
    """Refuse to replace an existing directory output unless `force`, and even then one that
    speedy cannot prove it wrote (an empty directory may go). Never the current directory or
    above."""
    _refuse_current_directory(out)
    out = followed(out)
    if not out.exists():
        return
    if not force:
        raise SpeedyError(f"output {out} already exists", "pass --force to replace it")
    if not out.is_dir():
        raise SpeedyError(f"output {out} is a file", "name a directory to write")
    if any(out.iterdir()) and (why := unowned(out, marker)):
        raise SpeedyError(
            f"output {out} exists and speedy cannot prove it wrote it ({why}); --force replaces "
            "only speedy's own outputs",
            "choose another output path, or move that one away yourself",
        )


def check_file_writable(
    out: Path, force: bool, force_file: bool, written_by_speedy: Callable[[Path], bool]
) -> None:
    """Refuse to replace an existing file unless `force` and speedy wrote it, or `force_file`."""
    _refuse_current_directory(out)
    if not (out.exists() or out.is_symlink()):
        return
    if out.is_dir():
        raise SpeedyError(f"output {out} is a directory", "name a file to write")
    if force_file:
        return
    if not force:
        raise SpeedyError(f"output {out} already exists", "pass --force to replace it")
    if not written_by_speedy(out):
        raise SpeedyError(
            f"output {out} exists and speedy did not write it; --force replaces only speedy's "
            "own files",
            "choose another output path, or pass --force-file to replace it anyway",
        )


@contextmanager
def atomic_dir(out_dir: Path, force: bool, marker: str = MANIFEST) -> Iterator[Path]:
    """Yield a temporary directory that becomes `out_dir` only if the block completes.

    On any error or interruption the temporary directory is removed and an existing `out_dir`
    is left untouched. What killed writers left beside `out_dir` goes first (an old output
    caught mid-replacement is put back). An output that another process published meanwhile is
    replaced only with `force`. A symbolic link's target is written, the link kept.
    """
    out_dir = followed(out_dir)
    if out_dir.parent.is_dir():
        _sweep(out_dir)
    check_writable(out_dir, force, marker)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    own = Path(
        tempfile.mkdtemp(prefix=f".{out_dir.name}.{os.getpid()}.", suffix=".partial",
                         dir=out_dir.parent)
    )  # fmt: skip
    try:
        claim(own)
        work = own / NEW
        work.mkdir()  # unlike `own`, follows the umask
        yield work
        interrupt.check()
        _publish(own, out_dir, force)
    finally:
        shutil.rmtree(own, ignore_errors=True)


def _sweep(out_dir: Path) -> None:
    """Remove dead writers' scratch directories; restore an output one was replacing."""
    for entry in sorted(out_dir.parent.glob(f".{out_dir.name}.*.partial")):
        if abandoned(entry):
            if (entry / OLD).is_dir() and not (out_dir.exists() or out_dir.is_symlink()):
                (entry / OLD).rename(out_dir)
            remove(entry)


def _publish(own: Path, out_dir: Path, force: bool) -> None:
    taken = SpeedyError(
        f"{out_dir} was written by another process while this one ran; this result was not kept",
        "pass --force to replace it, or write to another path",
    )
    if out_dir.exists():
        if not force:
            raise taken
        out_dir.rename(own / OLD)  # removed with `own`; put back by a sweep if killed here
        (own / NEW).rename(out_dir)
        return
    try:
        (own / NEW).rename(out_dir)
    except OSError as exc:  # another writer published first (a non-empty directory)
        if out_dir.exists():
            raise taken from exc
        raise
