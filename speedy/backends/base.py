"""What a backend is: the runtime that loads one kind of graph file and, for a compile target,
the build that makes those files from a parent's graphs."""

import importlib
from abc import ABC
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from speedy.artifact import Artifact, Precision
from speedy.backends import BACKENDS
from speedy.devices import Device
from speedy.model_spec import ModelSpec
from speedy.runtime.base import Session
from speedy.shapes import Profile
from speedy.specs import TensorSpec


class NoOptions(BaseModel):
    """A backend without options of its own."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class CompileJob:
    """One graph to compile, and what every backend gets to do it."""

    graph: str
    source: Path  # the parent's model file of the graph
    inputs: list[TensorSpec]
    target: Path  # where the compiled model file goes (more files may go beside it)
    device: Device
    fp16: bool
    int8: bool
    precision: Precision  # of the compiled graph
    options: BaseModel  # the backend's own Options
    spec: ModelSpec
    profiles: list[Profile]  # from the data, for backends with `profiles`
    memo: dict[str, Any] = field(default_factory=dict)  # shared by the graphs of one compile


@dataclass
class Compiled:
    """A compiled graph: its files (the model file first), runtime section and build report."""

    files: list[str]
    section: BaseModel | None
    report: dict[str, Any]


class Backend(ABC):
    """A runtime for one kind of graph file; with `compiles_from`, also a `speedy compile`
    target. Subclasses are pure data plus methods that import their runtime when called."""

    name: ClassVar[str]  # --backend NAME, and the `backend` of its manifest section
    kind: ClassVar[str]  # the kind of graph file it loads (and compiles to)
    summary: ClassVar[str]  # what it makes, for --backend's help
    sessions: ClassVar[str]  # the module whose `open_graphs(artifact, names, device, threads)`
    # loads its graphs (imported then: its runtime's imports live there)
    builder: ClassVar[str | None] = None  # the module whose `compile_graph(job)` builds one
    compiles_from: ClassVar[str | None] = None  # the kind it compiles (None: not a target)
    suffix: ClassVar[str] = ""  # of the model file it compiles to
    Options: ClassVar[type[BaseModel]] = NoOptions  # its own compile options (CLI flags too)
    Section: ClassVar[type[BaseModel] | None] = None  # what a compiled graph records
    section_required: ClassVar[bool] = False  # graphs of its kind cannot load without one
    runs_code: ClassVar[str | None] = None  # its files run code when loaded: what they are
    tools: ClassVar[tuple[str, ...]] = ()  # packages whose versions an artifact records
    devices: ClassVar[tuple[Device, ...]] = ("cpu", "cuda")
    default_device: ClassVar[Device] = "cpu"
    profiles: ClassVar[bool] = False  # takes shape profiles derived from data
    reads_qdq: ClassVar[bool] = True  # --int8 applies: INT8 from the parent's Q/DQ nodes

    def check(self, fp16: bool, options: BaseModel) -> None:
        """Refuse options that do not go together."""
        return

    def require(self, device: Device) -> None:
        """Fail before any work when its runtime, or the device, is missing here."""
        return

    def compile(self, job: CompileJob) -> Compiled:
        """Build one graph into `job.target`."""
        assert self.builder is not None, f"backend {self.name} compiles nothing"
        return importlib.import_module(self.builder).compile_graph(job)

    def open_graphs(
        self, artifact: Artifact, names: Sequence[str], device: str, threads: int | None
    ) -> dict[str, Session]:
        """A session per named graph of `artifact`."""
        return importlib.import_module(self.sessions).open_graphs(artifact, names, device, threads)

    def parity_sizes(
        self, section: BaseModel | None, sizes: list[dict[str, int]], spec: ModelSpec
    ) -> list[dict[str, int]]:
        """The parity sizes a graph compiled with `section` can be checked at."""
        return sizes


def backend(name: str) -> Backend:
    """The backend registered under `name`."""
    return BACKENDS.get(name)


def compile_targets() -> list[str]:
    """The backends `speedy compile` builds for."""
    return [name for name in BACKENDS.names() if backend(name).compiles_from]
