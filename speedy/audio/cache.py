"""Feature cache keyed by content hash: the same audio and front end are computed once."""

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speedy.identity import code_version


def default_cache_dir() -> Path:
    """`$SPEEDY_CACHE_DIR`, else `$XDG_CACHE_HOME/speedy`, else `~/.cache/speedy`."""
    if env := os.environ.get("SPEEDY_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "speedy"


@dataclass
class FeatureCache:
    """Stores front-end outputs as .npy files named by the hash of input bytes and settings."""

    directory: Path
    hits: int = 0
    misses: int = 0

    def get(self, source: Path, settings: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """Features of `source` under `settings`, computed and stored on a miss."""
        digest = hashlib.sha256()
        digest.update(source.read_bytes())
        digest.update(f"{settings}|{code_version()}".encode())
        entry = self.directory / "features" / f"{digest.hexdigest()}.npy"
        if entry.is_file():
            self.hits += 1
            return np.load(entry, allow_pickle=False)
        self.misses += 1
        features = compute()
        partial = entry.with_suffix(f".{os.getpid()}.tmp.npy")
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            np.save(partial, features, allow_pickle=False)
            partial.replace(entry)
        except OSError:  # a read-only cache: computed again next time
            partial.unlink(missing_ok=True)
        return features

    def summary(self) -> str:
        return f"feature cache: {self.hits} hit(s), {self.misses} computed ({self.directory})"
