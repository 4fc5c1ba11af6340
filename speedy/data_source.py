"""Real model inputs from a data source (audio files, .npy features, text), read by the family."""

from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from speedy.audio.cache import FeatureCache, default_cache_dir
from speedy.audio.io import AUDIO_SUFFIXES, read_audio
from speedy.errors import SpeedyError

if TYPE_CHECKING:
    from speedy.families.base import Family
    from speedy.model_spec import ModelSpec

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


def audio_features(source: Path, family: "Family", cache: FeatureCache) -> list[np.ndarray]:
    """The family's front-end features of every audio or .npy file in `source`, cached."""
    settings = f"{family.name}|{family.audio.model_dump_json()}"
    features = []
    for path in data_files(source):
        if path.suffix == ".npy":
            features.append(np.load(path, allow_pickle=False).astype(np.float32))
            continue
        features.append(
            cache.get(
                path,
                settings,
                lambda p=path: family.features(read_audio(p, family.audio.sample_rate)),
            )
        )
    return features


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


def read_features(source: Path, spec: "ModelSpec", cache: FeatureCache | None = None) -> list[Any]:
    """The family's examples from `source`: audio features for a vocoder, sentences for a
    text-to-mel model (see `Family.read_data`)."""
    return spec.adapter().read_data(source, cache or FeatureCache(default_cache_dir()))
