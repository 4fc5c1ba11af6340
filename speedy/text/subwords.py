"""A model's own subword tokenizer (Hugging Face `tokenizers`, a `tokenizer.json` text), run
without torch or transformers, and the byte stand-in of a seeded model that has none."""

import re
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from speedy.errors import SpeedyError

INSTALL = "pip install 'openspeedy[qwen]'"
FIX = "pass the checkpoint directory with its tokenizer files (vocab.json, merges.txt, ...)"


class TextIds(Protocol):
    def encode(self, text: str) -> np.ndarray: ...


def from_checkpoint(directory: Path) -> str | None:
    """The `tokenizer.json` text of a Hugging Face model directory's text tokenizer (read with
    transformers, which converts vocab.json + merges.txt); None where it has no tokenizer files."""
    if not any((directory / name).is_file() for name in ("tokenizer.json", "vocab.json")):
        return None
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise SpeedyError("transformers is not installed", INSTALL) from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise SpeedyError(f"{directory}: its text tokenizer cannot be read ({exc})", FIX) from exc
    return tokenizer.backend_tokenizer.to_str()


class Subwords:
    """Text -> int64 ids with a `tokenizer.json` text."""

    def __init__(self, definition: str) -> None:
        self.definition = definition

    @cached_property
    def tokenizer(self) -> Any:  # tokenizers.Tokenizer, imported lazily
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise SpeedyError("the `tokenizers` package is not installed", INSTALL) from None
        return Tokenizer.from_str(self.definition)

    def encode(self, text: str) -> np.ndarray:
        return np.array(self.tokenizer.encode(text, add_special_tokens=False).ids, np.int64)


class ByteTokens:
    """A seeded model's stand-in: `tokens` (whole words and special tokens) at their ids, every
    other UTF-8 byte as its value (0-255). Its ids mean nothing to the weights."""

    def __init__(self, tokens: Mapping[str, int]) -> None:
        self.tokens = dict(tokens)
        self.split = re.compile("(" + "|".join(map(re.escape, self.tokens)) + ")")

    def encode(self, text: str) -> np.ndarray:
        ids: list[int] = []
        for part in self.split.split(text):
            ids += [self.tokens[part]] if part in self.tokens else list(part.encode())
        return np.array(ids, np.int64)


def text_ids(definition: str | None, stand_in: Mapping[str, int]) -> TextIds:
    """The tokenizer of `definition` (a `tokenizer.json` text), or the byte stand-in."""
    return Subwords(definition) if definition is not None else ByteTokens(stand_in)
