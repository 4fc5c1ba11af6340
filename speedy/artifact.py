"""Artifacts: a directory of model files plus a `speedy.json` manifest, written atomically.

A manifest names the artifact's graphs (one for a vocoder; `prefill` and `decode` for an
autoregressive model...), each with its file, I/O, precision and, once compiled, the typed runtime
section its backend needs. Every file in the directory, external data included, is listed with
its SHA-256; `Artifact.open` checks them all, so an edited, swapped or missing file is refused.
"""

import hashlib
import json
import re
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from speedy.backends import BACKENDS, for_kind, kinds
from speedy.errors import SpeedyError, first_invalid
from speedy.identity import code_version
from speedy.model_spec import ModelSpec
from speedy.plain_data import MAX_DEPTH, too_deep
from speedy.reports import Reports
from speedy.specs import TensorSpec

MANIFEST = "speedy.json"
FORMAT_VERSION = 2
TOOLS = ("torch", "onnx", "onnxruntime", "onnxslim", "onnxsim")  # and each backend's
# A graph's name becomes a file name (`<graph>.onnx`): a plain name, never a path.
GRAPH_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
REBUILD = (
    "rebuild it with this speedy (`speedy run RECIPE --force`, or rerun the stage that made it)"
)


# A graph's arithmetic: int8+fp32 is INT8 with some layers kept in float, int8-dynamic INT8
# MatMuls with scales taken from each run's activations, int4-weights MatMuls of 4-bit weights,
# int8-weights float arithmetic on weights stored in 8 bits (made float32 when loaded).
Precision = Literal[
    "fp32",
    "fp16",
    "int8",
    "int8+fp32",
    "int8+fp16",
    "int8-dynamic",
    "int4-weights",
    "int8-weights",
]
# The largest error against the parent each reduced precision allows (fp32: the recipe's atol).
REDUCED_ATOL: dict[str, float] = {
    "fp16": 1e-2,
    "int8": 1e-1,
    "int8+fp32": 1e-1,
    "int8+fp16": 1e-1,
    "int8-dynamic": 1e-1,
    "int4-weights": 1e-1,
    "int8-weights": 1e-1,
}


class Lineage(BaseModel):
    """Where an artifact came from: its parent, the stage and options that made it, and tools."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    parent_digest: str | None
    fingerprint: str
    options: dict[str, Any]
    tools: dict[str, str]
    created: str


class GraphEntry(BaseModel):
    """One graph of an artifact: its model file, I/O, precision and runtime section."""

    model_config = ConfigDict(extra="forbid")

    kind: str  # the kind of model file, which one backend loads (onnx, torch, trt...)
    files: list[str] = Field(min_length=1)  # the model file first, then its external data
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    precision: Precision = "fp32"
    # what a compiled graph's backend needs to load it: that backend's `Section`
    runtime: SerializeAsAny[BaseModel] | None = None

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind not in kinds():
            raise ValueError(f"unknown kind {kind!r} (known: {', '.join(kinds())})")
        return kind

    @field_validator("runtime", mode="before")
    @classmethod
    def _backend_section(cls, runtime: object) -> object:
        """A section as its backend's own type, found by its `backend` name."""
        if not isinstance(runtime, dict):
            return runtime
        name = runtime.get("backend")
        if name not in BACKENDS or (section := BACKENDS.get(name).Section) is None:
            raise ValueError(f"no backend {name!r} with a runtime section")
        return section.model_validate(runtime)

    @model_validator(mode="after")
    def _compiled_runtime(self) -> "GraphEntry":
        loader = for_kind(self.kind)
        if loader.section_required and getattr(self.runtime, "backend", None) != loader.name:
            raise ValueError(f"kind {self.kind} needs a `runtime` section of backend {loader.name}")
        return self

    @property
    def file(self) -> str:
        """The model file, relative to the artifact directory (a torch artifact's graphs share
        one)."""
        return self.files[0]


class Manifest(BaseModel):
    """Everything needed to load, feed and trust an artifact."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    model: ModelSpec
    graphs: dict[str, GraphEntry] = Field(min_length=1)
    files: dict[str, str] = Field(min_length=1)  # every file -> "sha256:<hex>"
    digest: str  # over `files`: identifies the artifact's contents
    lineage: Lineage
    reports: dict[str, Any] = Field(default_factory=dict)  # as JSON; typed by `typed_reports`

    @field_validator("graphs")
    @classmethod
    def _plain_graph_names(cls, graphs: dict[str, GraphEntry]) -> dict[str, GraphEntry]:
        for name in graphs:
            if not GRAPH_NAME.fullmatch(name):
                raise ValueError(
                    f"graph name {name!r} is not a plain name (a letter or _, then letters, "
                    "digits or _, at most 64)"
                )
        return graphs

    @field_validator("reports")
    @classmethod
    def _known_reports(cls, reports: dict[str, Any]) -> dict[str, Any]:
        Reports.model_validate(reports)
        return reports

    def typed_reports(self) -> Reports:
        """The stages' reports as their models."""
        return Reports.model_validate(self.reports)

    @model_validator(mode="after")
    def _files_listed(self) -> "Manifest":
        for name, graph in self.graphs.items():
            if unlisted := [f for f in graph.files if f not in self.files]:
                raise ValueError(f"graph '{name}' names file {unlisted[0]}, which is not listed")
        return self

    @property
    def kind(self) -> str:
        """The graphs' kind, or their kinds joined by '+' when they differ."""
        return "+".join(sorted({g.kind for g in self.graphs.values()}))

    @property
    def reduced_atol(self) -> float | None:
        """The parity tolerance of its least precise graph (None: every graph is FP32)."""
        return (
            max((REDUCED_ATOL.get(g.precision, 0.0) for g in self.graphs.values()), default=0.0)
            or None
        )

    @property
    def precision(self) -> str:
        """The graphs' precision, or `graph:precision` pairs when they differ (for people)."""
        found = {g.precision for g in self.graphs.values()}
        if len(found) == 1:
            return found.pop()
        return ",".join(f"{n}:{g.precision}" for n, g in self.graphs.items())

    def graph(self, name: str) -> GraphEntry:
        """The graph called `name`, with a clear error naming the ones there are."""
        if name not in self.graphs:
            raise SpeedyError(
                f"the artifact has no graph '{name}'", f"use one of: {', '.join(self.graphs)}"
            )
        return self.graphs[name]


class Artifact:
    """An artifact directory on disk with its parsed manifest."""

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self.path = path
        self.manifest = manifest

    def file(self, graph: str) -> Path:
        """The model file of `graph`."""
        return self.path / self.manifest.graph(graph).file

    @property
    def size_bytes(self) -> int:
        return sum((self.path / name).stat().st_size for name in self.manifest.files)

    @classmethod
    def open(cls, path: Path, verify: bool = True) -> "Artifact":
        """Read the artifact at `path`, with a clear error when it is not one; with `verify`,
        check that every listed file is inside the directory and has its recorded digest."""
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise SpeedyError(
                f"{path} is not a speedy artifact (no {MANIFEST})",
                "pass a directory written by a speedy stage",
            )
        try:
            raw = json.loads(manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise SpeedyError(f"{manifest_path} is not JSON ({exc})", REBUILD) from exc
        if too_deep(raw):
            raise SpeedyError(f"{manifest_path} nests deeper than {MAX_DEPTH} levels", REBUILD)
        found = raw.get("format_version") if isinstance(raw, dict) else None
        if found != FORMAT_VERSION:
            raise SpeedyError(
                f"{path} has manifest format {found}, this speedy reads {FORMAT_VERSION}", REBUILD
            )
        try:
            manifest = Manifest.model_validate(raw)
        except ValidationError as exc:
            raise SpeedyError(
                f"{manifest_path} is not a valid manifest: {first_invalid(exc)}", REBUILD
            ) from exc
        artifact = cls(path, manifest)
        for name in manifest.files:
            contained(path, name)
        if manifest.digest != files_digest(manifest.files):  # the lineage and reuse key
            raise SpeedyError(
                f"{manifest_path} was edited: its digest is not that of the files it lists",
                REBUILD,
            )
        if verify:
            artifact.verify()
        return artifact

    def verify(self) -> None:
        """Check every file against its recorded digest."""
        for name, expected in self.manifest.files.items():
            file = self.path / name
            if not file.is_file():
                raise SpeedyError(
                    f"file {name} of artifact {self.path} is missing",
                    "copy the whole artifact directory (external data too), or rebuild it",
                )
            if file_digest([file]) != expected:
                raise SpeedyError(
                    f"file {name} of artifact {self.path} was changed after it was written "
                    "(its SHA-256 differs from the manifest's)",
                    "rebuild the artifact, or pass --no-verify to load it anyway",
                )


def contained(directory: Path, name: str) -> Path:
    """`directory / name`, refused when it would lead outside `directory` (an absolute path,
    `..`, or a link pointing elsewhere)."""
    root = directory.resolve()
    target = (root / name).resolve()
    if Path(name).is_absolute() or not target.is_relative_to(root):
        raise SpeedyError(
            f"artifact {directory} lists a file outside its directory ({name})",
            "only load artifacts whose files all sit inside the artifact directory",
        )
    return target


def file_digest(paths: list[Path]) -> str:
    """SHA-256 over the contents of `paths`, in order."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def directory_files(directory: Path, marker: str = MANIFEST) -> dict[str, str]:
    """Every file below `directory` but its `marker` (the file listing them), relative path ->
    SHA-256, sorted."""
    found = sorted(p for p in directory.rglob("*") if p.is_file() and p != directory / marker)
    return {p.relative_to(directory).as_posix(): file_digest([p]) for p in found}


def files_digest(files: dict[str, str]) -> str:
    """One digest over a manifest's file list (names and contents)."""
    text = json.dumps(sorted(files.items()))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def tool_versions() -> dict[str, str]:
    """Versions of speedy (with a digest of its code) and of the installed tools that can affect
    an artifact."""
    found = {"openspeedy": code_version()}
    backend_tools = (tool for name in BACKENDS.names() for tool in BACKENDS.get(name).tools)
    for name in dict.fromkeys([*TOOLS, *backend_tools]):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_manifest(directory: Path, manifest: Manifest) -> None:
    (directory / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")
