"""Files of a data source (audio, .npy features, text) and their cached front-end features."""

from collections.abc import Callable
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
                lambda p=path: front_end(read_audio(p, audio.sample_rate)),
            )
        )
    return features


def read_array(source: Path | BinaryIO, name: str | None = None) -> np.ndarray:
    """A .npy file (or an open one, called `name`) of real numbers as float32 (never pickled
    objects); finite values only."""
    what = name or str(source)
    try:
        array = np.load(source, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise SpeedyError(
            f"cannot read {what} as a .npy array: {str(exc).splitlines()[0]}",
            "pass an array saved with numpy.save (numbers, no objects)",
        ) from exc
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise SpeedyError(
            f"{what} holds {array.dtype} values", "pass real numbers (float32 log-mels)"
        )
    check_finite(array, what)
    return array.astype(np.float32)


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
