"""Backends as plugins: a backend is one package whose `__init__` holds a light `Backend`
(speedy.backends.base: its options, its manifest section, the kinds it reads and makes) and whose
runtime and builder are imported only when a graph is built or loaded. A new backend is that
package plus its line in `BACKENDS` (or, from another distribution, a `speedy.backends` entry
point); nothing outside its package names it."""

from typing import Any

from speedy.errors import SpeedyError
from speedy.registry import Registry

# name -> the package's Backend instance (typed as speedy.backends.base.Backend)
BACKENDS: Registry[Any] = Registry(
    "backend",
    "speedy.backends",
    {
        "ort": "speedy.backends.ort:backend",
        "torch": "speedy.backends.pytorch:backend",
        "trt": "speedy.backends.trt:backend",
        "aoti": "speedy.backends.aoti:backend",
        "openvino": "speedy.backends.openvino:backend",
    },
)


def for_kind(kind: str) -> Any:
    """The backend that loads graphs of `kind` (onnx, torch, trt...)."""
    for name in BACKENDS.names():
        if BACKENDS.get(name).kind == kind:
            return BACKENDS.get(name)
    raise SpeedyError(f"no backend loads graphs of kind '{kind}'", "install the one that does")


def kinds() -> list[str]:
    """Every kind of graph file some backend loads."""
    return sorted({BACKENDS.get(name).kind for name in BACKENDS.names()})
