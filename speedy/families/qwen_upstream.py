"""The installed `qwen-tts` package's 12 Hz tokenizer modules, imported on their own.

`qwen_tts/__init__.py` and `qwen_tts/core/__init__.py` import the whole package: the talker, the
25 Hz tokenizer (torchaudio, sox) and the demo's dependencies. The 12 Hz tokenizer needs only
torch and transformers, so its two modules are imported below package objects that are created
without running those `__init__` files (the classes are the installed package's own).
"""

import importlib
import importlib.util
import sys
from types import ModuleType

from speedy.errors import SpeedyError

PACKAGE = "qwen_tts"
TOKENIZER_12HZ = f"{PACKAGE}.core.tokenizer_12hz"
INSTALL = "pip install 'openspeedy[qwen]' && pip install --no-deps qwen-tts==0.1.1"


def _bare_package(name: str) -> None:
    """Register package `name` (its path, not its `__init__` code) unless already imported."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None:
        raise SpeedyError(f"{PACKAGE} (Qwen3-TTS's model code) is not installed", INSTALL)
    sys.modules[name] = importlib.util.module_from_spec(spec)


def tokenizer_12hz() -> tuple[ModuleType, ModuleType]:
    """(modeling, configuration) modules of Qwen3-TTS-Tokenizer-12Hz, from the installed
    `qwen-tts`."""
    try:
        importlib.import_module("transformers")
    except ImportError:
        raise SpeedyError("transformers is not installed", INSTALL) from None
    _bare_package(PACKAGE)
    _bare_package(f"{PACKAGE}.core")
    modeling = importlib.import_module(f"{TOKENIZER_12HZ}.modeling_qwen3_tts_tokenizer_v2")
    configuration = importlib.import_module(
        f"{TOKENIZER_12HZ}.configuration_qwen3_tts_tokenizer_v2"
    )
    return modeling, configuration
