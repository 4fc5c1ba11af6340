"""The installed `qwen-tts` package's model modules, imported on their own.

`qwen_tts/__init__.py` and `qwen_tts/core/__init__.py` import the whole package: the 25 Hz
tokenizer (torchaudio, sox) and the demo's dependencies. The 12 Hz tokenizer and the Qwen3-TTS
talker need only torch, transformers (and librosa's mel filters), so their modules are imported
below package objects that are created without running those `__init__` files (the classes are
the installed package's own).
"""

import importlib
import importlib.util
import sys
from types import ModuleType
from typing import Any

from speedy.errors import SpeedyError

PACKAGE = "qwen_tts"
TOKENIZER_12HZ = f"{PACKAGE}.core.tokenizer_12hz"
MODELS = f"{PACKAGE}.core.models"
# What the talker's module imports for `from_pretrained` only (its speech tokenizer loader, which
# pulls in the 25 Hz tokenizer): speedy builds the 12 Hz tokenizer as its own family.
SPEECH_TOKENIZER_LOADER = f"{PACKAGE}.inference.qwen3_tts_tokenizer"
INSTALL = "pip install 'openspeedy[qwen]' && pip install --no-deps qwen-tts==0.1.1"


def _bare_package(name: str) -> None:
    """Register package `name` (its path, not its `__init__` code) unless already imported."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None:
        raise SpeedyError(f"{PACKAGE} (Qwen3-TTS's model code) is not installed", INSTALL)
    sys.modules[name] = importlib.util.module_from_spec(spec)


def _packages() -> None:
    try:
        importlib.import_module("transformers")
    except ImportError:
        raise SpeedyError("transformers is not installed", INSTALL) from None
    _bare_package(PACKAGE)
    _bare_package(f"{PACKAGE}.core")


class _NoSpeechTokenizerLoader:
    """Stands in for `Qwen3TTSTokenizer`, which only `from_pretrained` calls."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise SpeedyError(
            "speedy builds the Qwen3-TTS talker without upstream's speech tokenizer loader",
            "build the speech_tokenizer/ directory with the qwen3_tts_tokenizer_12hz recipe",
        )


def tts_model() -> tuple[ModuleType, ModuleType]:
    """(modeling, configuration) modules of the Qwen3-TTS talker, from the installed
    `qwen-tts`."""
    _packages()
    if SPEECH_TOKENIZER_LOADER not in sys.modules:
        _bare_package(f"{PACKAGE}.inference")
        loader = ModuleType(SPEECH_TOKENIZER_LOADER)
        loader.Qwen3TTSTokenizer = _NoSpeechTokenizerLoader  # type: ignore[attr-defined]
        sys.modules[SPEECH_TOKENIZER_LOADER] = loader
    try:
        modeling = importlib.import_module(f"{MODELS}.modeling_qwen3_tts")
    except ImportError as exc:
        raise SpeedyError(f"the Qwen3-TTS model code cannot be imported ({exc})", INSTALL) from exc
    return modeling, importlib.import_module(f"{MODELS}.configuration_qwen3_tts")


def tokenizer_12hz() -> tuple[ModuleType, ModuleType]:
    """(modeling, configuration) modules of Qwen3-TTS-Tokenizer-12Hz, from the installed
    `qwen-tts`."""
    _packages()
    modeling = importlib.import_module(f"{TOKENIZER_12HZ}.modeling_qwen3_tts_tokenizer_v2")
    configuration = importlib.import_module(
        f"{TOKENIZER_12HZ}.configuration_qwen3_tts_tokenizer_v2"
    )
    return modeling, configuration
