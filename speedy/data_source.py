"""Real model inputs from a directory of audio files or .npy features, through the feature cache."""

from pathlib import Path

import numpy as np

from speedy.audio.cache import FeatureCache, default_cache_dir
from speedy.audio.io import AUDIO_SUFFIXES, read_audio
from speedy.errors import SpeedyError
from speedy.model_spec import ModelSpec


def data_files(source: Path) -> list[Path]:
    """Audio or .npy files in `source` (a directory or one file), sorted; error when none."""
    if not source.exists():
        raise SpeedyError(f"data source not found: {source}", "pass an existing file or directory")
    suffixes = (*AUDIO_SUFFIXES, ".npy")
    found = [source] if source.is_file() else sorted(p for p in source.iterdir() if p.is_file())
    found = [p for p in found if p.suffix.lower() in suffixes]
    if not found:
        raise SpeedyError(
            f"no audio or .npy files in {source}",
            f"add files ending in {', '.join(suffixes)}",
        )
    return found


def read_features(
    source: Path, spec: ModelSpec, cache: FeatureCache | None = None
) -> list[np.ndarray]:
    """Front-end features of every file in `source`, cached by content hash."""
    family = spec.adapter()
    cache = cache or FeatureCache(default_cache_dir())
    settings = f"{spec.family}|{spec.audio.model_dump_json()}"
    features = []
    for path in data_files(source):
        if path.suffix == ".npy":
            features.append(np.load(path, allow_pickle=False).astype(np.float32))
            continue
        features.append(
            cache.get(
                path,
                settings,
                lambda p=path: family.features(read_audio(p, spec.audio.sample_rate)),
            )
        )
    return features
