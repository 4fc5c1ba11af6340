"""The stage contract and the one function that runs a stage into an artifact directory."""

import hashlib
import json
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from speedy.artifact import (
    Artifact,
    Kind,
    Lineage,
    Manifest,
    atomic_dir,
    file_digest,
    now,
    tool_versions,
    write_manifest,
)
from speedy.model_spec import ModelSpec


@dataclass
class StageContext:
    """What every stage may use: the model spec, real features for checks, and thread count."""

    spec: ModelSpec
    features: list[Any]  # the family's examples (`Family.read_data`): mels, sentences, ...
    threads: int = 2


@dataclass
class Draft:
    """What a stage's `build` wrote into the artifact directory."""

    kind: Kind
    files: list[str]
    precision: str = "fp32"
    reports: dict[str, Any] = field(default_factory=dict)


class Stage(ABC):
    """A pass from a parent artifact to a new one, with typed options."""

    name: ClassVar[str]

    def __init__(self, options: BaseModel) -> None:
        self.options = options

    def source_digest(self, parent: Artifact | None) -> str | None:
        """Digest of what this stage reads; the parent artifact's by default."""
        return parent.manifest.digest if parent else None

    def fingerprint(self, parent: Artifact | None, spec: ModelSpec) -> str:
        """Identifies this stage's output: changes when its inputs, options, speedy's code or the
        tools' versions change."""
        key = json.dumps(
            [
                self.name,
                self.options.model_dump(mode="json"),
                spec.model_dump(mode="json"),
                self.source_digest(parent),
                tool_versions(),
            ],
            sort_keys=True,
        )
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()

    @abstractmethod
    def build(self, parent: Artifact | None, workdir: Path, ctx: StageContext) -> Draft:
        """Write the new model file(s) into `workdir`."""

    def validate(self, parent: Artifact | None, artifact: Artifact, ctx: StageContext) -> dict:
        """Check the new artifact against its parent; return reports, raise when it fails."""
        return {}


def cached(out_dir: Path, fingerprint: str) -> Artifact | None:
    """The artifact at `out_dir` if it was made from the same inputs and options."""
    try:
        artifact = Artifact.open(out_dir)
    except Exception:
        return None
    return artifact if artifact.manifest.lineage.fingerprint == fingerprint else None


def reuse_or_execute(
    stage: Stage, parent: Artifact, out_dir: Path, ctx: StageContext
) -> tuple[Artifact, float | None]:
    """The artifact at `out_dir` when made from the same inputs and options, else `stage` run
    into it; with the seconds the run took (None when reused)."""
    artifact = cached(out_dir, stage.fingerprint(parent, ctx.spec))
    if artifact is not None:
        return artifact, None
    start = time.perf_counter()
    artifact = execute(stage, parent, out_dir, ctx, force=True)
    return artifact, time.perf_counter() - start


def execute(
    stage: Stage, parent: Artifact | None, out_dir: Path, ctx: StageContext, force: bool = False
) -> Artifact:
    """Run `stage` into `out_dir` atomically: build, write the manifest, validate, rename."""
    with atomic_dir(out_dir, force) as workdir:
        draft = stage.build(parent, workdir, ctx)
        manifest = Manifest(
            kind=draft.kind,
            files=draft.files,
            digest=file_digest([workdir / f for f in draft.files]),
            model=ctx.spec,
            inputs=ctx.spec.inputs(),
            outputs=ctx.spec.outputs(),
            precision=draft.precision,
            lineage=Lineage(
                stage=stage.name,
                parent_digest=stage.source_digest(parent),
                fingerprint=stage.fingerprint(parent, ctx.spec),
                options=stage.options.model_dump(mode="json"),
                tools=tool_versions(),
                created=now(),
            ),
            reports=draft.reports,
        )
        write_manifest(workdir, manifest)
        manifest.reports.update(stage.validate(parent, Artifact(workdir, manifest), ctx))
        write_manifest(workdir, manifest)
    return Artifact.open(out_dir)
