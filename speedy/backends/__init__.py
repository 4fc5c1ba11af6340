"""Backends, one folder each: `section.py` (what the manifest records for it: pure data),
`session.py` (runs a graph; heavy imports live there) and, where speedy builds for it,
`build.py`. A new backend is one folder plus its line in `KINDS` and `RuntimeSection`."""

import importlib
from typing import Annotated, Literal

from pydantic import Field

from speedy.backends.aoti.section import AotiSection
from speedy.backends.ort.section import OrtSection
from speedy.backends.trt.section import TrtSection

Kind = Literal["torch", "onnx", "trt", "aoti"]
# What the runtime needs at load time, beyond the model file, for a compiled graph.
RuntimeSection = Annotated[OrtSection | TrtSection | AotiSection, Field(discriminator="backend")]
# Kind -> the module whose `open_graphs(artifact, names, device, threads)` loads its graphs.
KINDS: dict[str, str] = {
    "onnx": "speedy.backends.ort.session",
    "torch": "speedy.backends.pytorch.session",
    "aoti": "speedy.backends.aoti.session",
    "trt": "speedy.backends.trt.session",
}

# Kinds whose files hold code that runs when they load: loaded only when the user trusts them.
RUNS_CODE: dict[str, str] = {
    "aoti": "an AOTInductor package (.pt2), whose native code runs when it loads",
}


def session_module(kind: str):
    """The session module of a kind, imported only when an artifact of that kind is opened."""
    return importlib.import_module(KINDS[kind])
