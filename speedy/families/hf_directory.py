"""A Hugging Face model directory as `save_pretrained` writes it, read from local disk only:
`config.json` and the weights in `model.safetensors` (or the shards its
`model.safetensors.index.json` lists, which must lie inside the directory). Safetensors hold
tensors only: reading them runs no code."""

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speedy.errors import SpeedyError

if TYPE_CHECKING:
    import torch

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
FIX = "pass the directory `save_pretrained` wrote (or a downloaded snapshot of the model)"


def _file(directory: Path, name: str) -> Path:
    path = (directory / name).resolve()
    if not path.is_relative_to(directory.resolve()):
        raise SpeedyError(f"{directory / name} lies outside the checkpoint directory", FIX)
    if not path.is_file():
        raise SpeedyError(f"checkpoint directory {directory} has no {name}", FIX)
    return path


def read_config(directory: Path) -> dict[str, Any]:
    """The directory's `config.json` as a dict."""
    if not directory.is_dir():
        raise SpeedyError(f"checkpoint directory not found: {directory}", FIX)
    path = _file(directory, CONFIG)
    try:
        config = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpeedyError(f"{path} is not JSON ({exc})", FIX) from exc
    if not isinstance(config, dict):
        raise SpeedyError(f"{path} holds no JSON object", FIX)
    return config


def weight_files(directory: Path) -> list[Path]:
    """The safetensors files holding the directory's weights."""
    if not (directory / INDEX).is_file():
        return [_file(directory, WEIGHTS)]
    index = _file(directory, INDEX)
    try:
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise SpeedyError(f"{index} has no readable weight_map", FIX) from None
    return [_file(directory, shard) for shard in shards]


def read_tensors(directory: Path) -> "dict[str, torch.Tensor]":
    """Every tensor of the directory's weights, by name."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    tensors: dict[str, torch.Tensor] = {}
    for path in weight_files(directory):
        try:
            tensors |= load_file(path)
        except (SafetensorError, OSError) as exc:
            raise SpeedyError(f"{path} is not a readable safetensors file ({exc})", FIX) from exc
    return tensors


def checkpoint_files(path: Path) -> list[Path]:
    """The files whose contents make a checkpoint: the file itself, or a directory's config and
    weights."""
    if path.is_dir():
        return [_file(path, CONFIG), *weight_files(path)]
    return [path]
