"""Load any stage's artifact behind one interface: `load(path)` -> a `Model` of graph sessions.

    model = runtime.load("build/hifigan_v1/simplify")
    audio = model.run({"mel": mel})["audio"]           # a single-graph artifact
    step = model["decode"].run(feeds)                   # one graph of several

Opening an ONNX artifact imports onnxruntime, not torch or the model families.
"""

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from speedy.artifact import Artifact, Manifest
from speedy.backends import for_kind
from speedy.devices import check_device
from speedy.errors import SpeedyError
from speedy.runtime.base import Session, check_feeds
from speedy.specs import Feeds, TensorSpec

__all__ = ["Model", "Session", "check_feeds", "load", "trust_code"]
TRUST_CODE = "SPEEDY_TRUST_CODE"  # "1": load artifacts whose files run code (inherited by workers)


def trust_code() -> None:
    """Trust artifacts whose files run code when they load, in this process and its children."""
    os.environ[TRUST_CODE] = "1"


def check_trusted(artifact: Artifact) -> None:
    """Refuse an artifact with a graph whose files run code, unless the user trusts such code."""
    if os.environ.get(TRUST_CODE) == "1":
        return
    for name, graph in artifact.manifest.graphs.items():
        if runs_code := for_kind(graph.kind).runs_code:
            raise SpeedyError(
                f"graph '{name}' of {artifact.path} is {runs_code}; speedy loads "
                "such files only when you trust them",
                f"pass --trust (or set {TRUST_CODE}=1) if you built it or trust who did",
            )


class Model:
    """An artifact's graphs, loaded: `model[name]` is one graph's session."""

    def __init__(self, artifact: Artifact, sessions: Mapping[str, Session]) -> None:
        self.artifact = artifact
        self.sessions = dict(sessions)

    @property
    def manifest(self) -> Manifest:
        return self.artifact.manifest

    @property
    def path(self) -> Path:
        return self.artifact.path

    @property
    def graphs(self) -> list[str]:
        return list(self.sessions)

    def __getitem__(self, graph: str) -> Session:
        if graph not in self.sessions:
            raise SpeedyError(
                f"artifact {self.path} has no graph '{graph}'",
                f"use one of: {', '.join(self.sessions)}",
            )
        return self.sessions[graph]

    def only(self) -> Session:
        """The session of a single-graph artifact; a clear error when there are several."""
        if len(self.sessions) != 1:
            raise SpeedyError(
                f"artifact {self.path} has {len(self.sessions)} graphs "
                f"({', '.join(self.sessions)}), so `run` does not know which to run",
                "run one of them: model[NAME].run(feeds)",
            )
        return next(iter(self.sessions.values()))

    @property
    def inputs(self) -> list[TensorSpec]:
        return self.only().inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self.only().outputs

    def run(self, feeds: Mapping[str, np.ndarray]) -> Feeds:
        """Run a single-graph artifact."""
        return self.only().run(feeds)

    def replaced(self, graph: str, session: Session) -> "Model":
        """This model with `graph` run by `session` instead (a candidate of that graph)."""
        return Model(self.artifact, {**self.sessions, graph: session})


def load(
    path: str | Path,
    device: str = "cpu",
    threads: int | None = None,
    verify: bool = True,
    trust: bool = False,
) -> Model:
    """Open the artifact at `path` (its directory, or one of its model files) on `device`;
    `verify` checks every file against the manifest's digests first. Graphs whose files run code
    when they load (AOTInductor) need `trust` or `trust_code()`."""
    path = Path(path)
    artifact = Artifact.open(path if path.is_dir() else path.parent, verify)
    if not trust:
        check_trusted(artifact)
    device = check_device(device)
    by_kind: dict[str, list[str]] = {}
    for name, graph in artifact.manifest.graphs.items():
        by_kind.setdefault(graph.kind, []).append(name)
    sessions: dict[str, Session] = {}
    for kind, names in by_kind.items():
        sessions |= for_kind(kind).open_graphs(artifact, names, device, threads)
    return Model(artifact, {name: sessions[name] for name in artifact.manifest.graphs})
