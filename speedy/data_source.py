"""Files of a data source (audio, .npy features, text) and their cached front-end features."""

import math
import os
from collections.abc import Callable
from contextlib import nullcontext
from importlib.resources import files
from pathlib import Path
from typing import BinaryIO

import numpy as np

from speedy.audio.cache import FeatureCache
from speedy.audio.io import AUDIO_SUFFIXES, check_finite, read_audio
from speedy.audio.mel import AudioSpec
from speedy.errors import SpeedyError

DEFAULT_CLIPS = Path(str(files("speedy") / "data" / "clips"))
TEXT_SUFFIXES = (".txt",)


def data_files(
    source: Path, suffixes: tuple[str, ...] = (*AUDIO_SUFFIXES, ".npy"), what: str = "audio or .npy"
) -> list[Path]:
    """`what` files in `source` (a directory or one file): those ending in `suffixes`, sorted."""
    if not source.exists():
        raise SpeedyError(f"data source not found: {source}", "pass an existing file or directory")
    if not (source.is_file() or source.is_dir()):
        raise SpeedyError(
            f"data source {source} is neither a regular file nor a directory (a pipe or a device)",
            "pass a file, or a directory of them",
        )
    found = [source] if source.is_file() else sorted(p for p in source.iterdir() if p.is_file())
    found = [p for p in found if p.suffix.lower() in suffixes]
    if not found:
        raise SpeedyError(
            f"no {what} files in {source}",
            f"add files ending in {', '.join(suffixes)}",
        )
    return found


def audio_features(
    source: Path,
    audio: AudioSpec,
    cache: FeatureCache,
    front_end: Callable[[np.ndarray], np.ndarray],
) -> list[np.ndarray]:
    """`front_end`'s features of every audio file in `source` at the model's rate (cached by
    content hash), and the arrays of its .npy files as they are."""
    settings = f"{front_end.__qualname__}|{audio.model_dump_json()}"
    features = []
    for path in data_files(source):
        if path.suffix == ".npy":
            features.append(read_array(path))
            continue
        features.append(
            cache.get(
                path,
                settings,
                lambda p=path: audio_example(p, audio.sample_rate, front_end),
            )
        )
    return features


def audio_example(
    source: Path | BinaryIO,
    sample_rate: int,
    front_end: Callable[[np.ndarray], np.ndarray],
    name: str | None = None,
) -> np.ndarray:
    """`front_end`'s features of an audio file (or an open one, called `name`) at `sample_rate`,
    refused where they are not finite as float32 (samples so large their spectrum overflows)."""
    with np.errstate(over="ignore", invalid="ignore"):  # what overflows is refused below
        features = front_end(read_audio(source, sample_rate, name))
    return check_finite(features, f"{name or f'audio file {source}'}, through the front end,")


def _check_declared_size(file: BinaryIO, what: str) -> None:
    """Refuse a .npy whose header declares more data than the file holds, before numpy
    allocates room for it."""
    start = file.tell()
    version = np.lib.format.read_magic(file)
    read_header = (
        np.lib.format.read_array_header_1_0
        if version == (1, 0)
        else np.lib.format.read_array_header_2_0
    )
    shape, _, dtype = read_header(file)
    data_start = file.tell()
    held = file.seek(0, os.SEEK_END) - data_start
    file.seek(start)
    if (declared := math.prod(shape) * dtype.itemsize) > held:
        raise SpeedyError(
            f"{what} declares {dtype} values of shape {shape} ({declared:,} bytes), the file "
            f"holds {held:,}",
            "the file is truncated or corrupt: save it again with numpy.save",
        )


def read_array(source: Path | BinaryIO, name: str | None = None) -> np.ndarray:
    """A .npy file (or an open one, called `name`) of real numbers as float32 (never pickled
    objects); values finite as float32 only."""
    what = name or str(source)
    try:
        with source.open("rb") if isinstance(source, Path) else nullcontext(source) as file:
            _check_declared_size(file, what)
            array = np.load(file, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise SpeedyError(
            f"cannot read {what} as a .npy array: {str(exc).splitlines()[0]}",
            "pass an array saved with numpy.save (numbers, no objects)",
        ) from exc
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise SpeedyError(
            f"{what} holds {array.dtype} values", "pass real numbers (float32 log-mels)"
        )
    return check_finite(array, what)


def text_lines(source: Path) -> list[tuple[str, str]]:
    """(`file:line`, sentence) for each non-blank, non-`#` line of the .txt file(s) in `source`."""
    lines = []
    for path in data_files(source, TEXT_SUFFIXES, "text (.txt)"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip() and not line.lstrip().startswith("#"):
                lines.append((f"{path.name}:{number}", line.strip()))
    if not lines:
        raise SpeedyError(f"no sentences in {source}", "write one sentence per line")
    return lines


def example_names(source: Path, suffixes: tuple[str, ...], count: int) -> list[str]:
    """A name per example: the files' stems when each file is one example, else numbers."""
    paths = data_files(source, suffixes, "data")
    if len(paths) == count:
        return [p.stem for p in paths]
    return [f"{i:03d}" for i in range(count)]
