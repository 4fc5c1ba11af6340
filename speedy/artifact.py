"""Artifacts: a directory of model file(s) plus a `speedy.json` manifest, written atomically."""

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from speedy import interrupt
from speedy.errors import SpeedyError
from speedy.identity import code_version
from speedy.model_spec import ModelSpec
from speedy.specs import TensorSpec

MANIFEST = "speedy.json"
FORMAT_VERSION = 1
Kind = Literal["torch", "onnx", "trt", "aoti"]
TOOLS = ("torch", "onnx", "onnxruntime", "onnxslim", "onnxsim", "tensorrt")


class Lineage(BaseModel):
    """Where an artifact came from: its parent, the stage and options that made it, and tools."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    parent_digest: str | None
    fingerprint: str
    options: dict[str, Any]
    tools: dict[str, str]
    created: str


class Manifest(BaseModel):
    """Everything needed to load, feed and trust an artifact."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    kind: Kind
    files: list[str] = Field(min_length=1)
    digest: str
    model: ModelSpec
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    precision: str = "fp32"
    lineage: Lineage
    reports: dict[str, Any] = Field(default_factory=dict)


class Artifact:
    """An artifact directory on disk with its parsed manifest."""

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self.path = path
        self.manifest = manifest

    @property
    def model_file(self) -> Path:
        return self.path / self.manifest.files[0]

    @property
    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())

    @classmethod
    def open(cls, path: Path) -> "Artifact":
        """Read the artifact at `path`, with a clear error when it is not one."""
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise SpeedyError(
                f"{path} is not a speedy artifact (no {MANIFEST})",
                "pass a directory written by a speedy stage",
            )
        try:
            manifest = Manifest.model_validate_json(manifest_path.read_text())
        except ValidationError as exc:
            raise SpeedyError(
                f"{manifest_path} is not a valid manifest: {exc.errors()[0]['msg']}",
                "re-create the artifact with this version of speedy",
            ) from exc
        if manifest.format_version != FORMAT_VERSION:
            raise SpeedyError(
                f"{path} has manifest format {manifest.format_version}, "
                f"this speedy reads {FORMAT_VERSION}",
                "re-create the artifact with this version of speedy",
            )
        return cls(path, manifest)


def file_digest(paths: list[Path]) -> str:
    """SHA-256 over the contents of `paths`, in order."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def tool_versions() -> dict[str, str]:
    """Versions of speedy (with a digest of its code) and of the installed tools that can affect
    an artifact."""
    found = {"openspeedy": code_version()}
    for name in TOOLS:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_manifest(directory: Path, manifest: Manifest) -> None:
    (directory / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")


def check_writable(out_dir: Path, force: bool) -> None:
    """Refuse to replace an existing output unless `force`."""
    if out_dir.exists() and not force:
        raise SpeedyError(f"output {out_dir} already exists", "pass --force to replace it")


@contextmanager
def atomic_dir(out_dir: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary directory that becomes `out_dir` only if the block completes.

    On any error or interruption the temporary directory is removed and an existing
    `out_dir` is left untouched.
    """
    check_writable(out_dir, force)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        yield tmp
        interrupt.check()
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.old")
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old)
        else:
            tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
