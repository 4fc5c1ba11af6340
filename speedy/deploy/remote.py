"""Graphs run elsewhere (a Ray Serve replica, a Triton model) behind speedy's session interface,
so that the task loops, the chain and the HTTP app run over them unchanged."""

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from speedy.artifact import Artifact
from speedy.runtime import Model, Session
from speedy.serve.catalog import Catalog, named
from speedy.serve.options import ServeOptions
from speedy.specs import Feeds

# Runs graph `name` of the artifact on `feeds` wherever it lives, returning its outputs.
GraphCall = Callable[[str, Mapping[str, np.ndarray]], Feeds]


class RemoteSession(Session):
    """One graph of an artifact, run by `call`; feeds are checked here, before they travel."""

    def __init__(self, name: str, artifact: Artifact, call: GraphCall) -> None:
        super().__init__(name, artifact.manifest.graphs[name], artifact.manifest.model.dims)
        self.call = call

    def _run(self, feeds: Mapping[str, np.ndarray]) -> Feeds:
        return self.call(self.name, feeds)


def remote_model(artifact: Artifact, call: GraphCall) -> Model:
    """`artifact` (its manifest, opened here) with every graph run by `call`."""
    return Model(artifact, {name: RemoteSession(name, artifact, call)
                            for name in artifact.manifest.graphs})  # fmt: skip


def engine_name(name: str) -> str:
    """An artifact's name as a serving engine's model or deployment name (letters, digits, _ and
    -): `hifigan_v1/quantize` -> `hifigan_v1-quantize`."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "model"


def check_catalog(
    items: Sequence[str],
    vocoders: Sequence[str],
    chunk_seconds: float,
    open_artifact: Callable[[Path], Artifact] = Artifact.open,
) -> Catalog:
    """The catalog `speedy serve` would make of the artifacts, over graphs that never run:
    refuses what it would refuse (missing, corrupt, a text model with no vocoder of its mels)
    before anything is deployed; `open_artifact` may hand out artifacts the caller opened
    already."""

    def never(graph: str, feeds: Mapping[str, np.ndarray]) -> Feeds:
        raise AssertionError("a catalog being checked runs no graph")

    return Catalog.load(items, vocoders, chunk_seconds,
                        lambda path: remote_model(open_artifact(path), never))  # fmt: skip


def pinned(options: ServeOptions) -> ServeOptions:
    """`options` with every artifact as NAME=ABSOLUTE_PATH, for processes whose working
    directory is not the one the paths were given in."""

    def absolute(items: list[str]) -> list[str]:
        return [f"{name}={path.resolve()}" for name, path in map(named, items)]

    return options.model_copy(update={"artifacts": absolute(options.artifacts),
                                      "vocoders": absolute(options.vocoders)})  # fmt: skip
