"""Calibration sources: a named set, a directory or file of audio / .npy / text, or `default`.

A named set is `calibration/<name>.yaml` (the repository's `calibration/` directory, or one in
`$SPEEDY_CALIBRATION_PATH`): a list of files with their SHA-256, so a set always means the same
data; `calibration/<name>.txt` holds sentences for text-to-mel recipes. Every file goes through
the task's own reader (`Task.read_data`: the recipe's front end, resampling with a notice,
the content-hash feature cache). Named sets live in speedy's package data, so they are found
from a regular install as well as from a source checkout.
"""

import hashlib
import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from speedy.audio.cache import FeatureCache
from speedy.data_source import data_files
from speedy.errors import SpeedyError
from speedy.plain_data import load_yaml
from speedy.tasks import Task

PACKAGED_SETS = Path(str(files("speedy") / "data" / "calibration"))
DEFAULT = "default"  # the task's default data (for a vocoder: the clips shipped with speedy)


class CalibrationSet(BaseModel):
    """A named calibration set: files under `root` (relative to the YAML file) and their SHA-256."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    root: str = "."
    files: dict[str, str] = Field(min_length=1)  # file name -> "sha256:<hex>"


@dataclass
class Calibration:
    """The examples of a calibration source, one name each, and a digest of the files read."""

    source: str
    names: list[str]
    examples: list[Any]
    digest: str

    def example_digests(self) -> list[str]:
        return [example_digest(e) for e in self.examples]


def example_digest(example: Any) -> str:
    """Content digest of one example (features or a sentence), to spot the same data again."""
    if isinstance(example, np.ndarray):
        value = np.ascontiguousarray(example)
        data = f"{value.dtype}|{value.shape}|".encode() + value.tobytes()
    else:
        data = repr(example).encode()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def set_dirs() -> list[Path]:
    """Where named sets are looked up: `$SPEEDY_CALIBRATION_PATH` entries, then speedy's own."""
    extra = os.environ.get("SPEEDY_CALIBRATION_PATH", "")
    return [*(Path(p) for p in extra.split(os.pathsep) if p), PACKAGED_SETS]


def known_sets() -> list[str]:
    names = {
        p.stem for d in set_dirs() if d.is_dir() for p in [*d.glob("*.yaml"), *d.glob("*.txt")]
    }
    return sorted(names | {DEFAULT})


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def _set_files(path: Path, name: str) -> list[Path]:
    try:
        entry = CalibrationSet.model_validate(load_yaml(path.read_text()))
    except (yaml.YAMLError, ValidationError) as exc:
        raise SpeedyError(
            f"calibration set {path} is not valid: {str(exc).splitlines()[0]}",
            "list its files as `files: {NAME: sha256:HEX}` (see calibration/README.md)",
        ) from exc
    except SpeedyError as exc:
        raise SpeedyError(f"calibration set {path}: {exc.problem}", exc.fix) from exc
    root = (path.parent / entry.root).resolve()
    files = []
    for file_name, digest in entry.files.items():
        file = root / file_name
        if not file.is_file():
            raise SpeedyError(
                f"calibration set '{name}' needs {file}, which is missing",
                "get the clips named in calibration/README.md, or pass --calib DIR",
            )
        if _sha256(file) != digest:
            raise SpeedyError(
                f"{file} differs from the copy calibration set '{name}' was made with",
                f"restore the file, or update its sha256 in {path}",
            )
        files.append(file)
    return files


def source_files(source: str, task: Task) -> list[Path]:
    """The files a calibration source stands for, in a deterministic order."""
    if source == DEFAULT:
        return data_files(task.default_data, task.data_suffixes, task.data_kind)
    path = Path(source).expanduser()
    if not path.exists():
        for directory in set_dirs():
            if (directory / f"{source}.yaml").is_file():
                return _check_kind(_set_files(directory / f"{source}.yaml", source), task)
            if (directory / f"{source}.txt").is_file():  # sentences for text-to-mel recipes
                return _check_kind([directory / f"{source}.txt"], task)
        raise SpeedyError(
            f"'{source}' is neither a path nor a named calibration set",
            f"pass a directory or file of examples, or one of: {', '.join(known_sets())}",
        )
    if path.is_file():
        _check_kind([path], task)
    return data_files(path, task.data_suffixes, task.data_kind)


def _check_kind(files: list[Path], task: Task) -> list[Path]:
    if wrong := [f for f in files if f.suffix.lower() not in task.data_suffixes]:
        raise SpeedyError(
            f"calibration file {wrong[0]} is not what a {task.name} model's inputs come from "
            f"({task.data_kind})",
            f"pass {task.data_kind} files",
        )
    return files


def load_calibration(source: str, task: Task, cache: FeatureCache) -> Calibration:
    """Every example of `source`, read by the task (audio features come from the cache)."""
    names: list[str] = []
    examples: list[Any] = []
    digest = hashlib.sha256()
    try:
        found_files = source_files(source, task)
    except SpeedyError as exc:
        raise SpeedyError(f"calibration source: {exc.problem}", exc.fix) from exc
    for path in found_files:
        try:
            found = task.read_data(path, cache)
        except SpeedyError as exc:
            raise SpeedyError(f"calibration source '{source}': {exc.problem}", exc.fix) from exc
        digest.update(f"{path.name}|{_sha256(path)}|".encode())
        names += [path.name] if len(found) == 1 else [f"{path.name}#{i}" for i in range(len(found))]
        examples += found
    return Calibration(source, names, examples, "sha256:" + digest.hexdigest())
