"""The stage contract and the one function that runs a stage into an artifact directory."""

import hashlib
import json
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from speedy.artifact import (
    Artifact,
    GraphEntry,
    Lineage,
    Manifest,
    directory_files,
    files_digest,
    now,
    tool_versions,
    write_manifest,
)
from speedy.errors import SpeedyError
from speedy.model_spec import ModelSpec
from speedy.outputs import atomic_dir
from speedy.stages.options import GraphOptions, Options
from speedy.tasks import Task
from speedy.weight_pool import pool_shared_weights


@dataclass
class StageContext:
    """What every stage may use: the model spec, its task, real examples for checks, and the
    thread count."""

    spec: ModelSpec
    task: Task
    examples: list[Any]  # the task's examples (`Task.read_data`): mels, sentences, ...
    threads: int = 2


@dataclass
class Draft:
    """What a stage's `build` wrote into the artifact directory: its graphs, and reports."""

    graphs: dict[str, GraphEntry]
    reports: dict[str, Any] = field(default_factory=dict)


class Stage(ABC):
    """A pass from a parent artifact to a new one, with typed options."""

    name: ClassVar[str]

    def __init__(self, options: Options) -> None:
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


def selected_graphs(options: GraphOptions, parent: Artifact) -> list[str]:
    """The parent's graphs the stage acts on (all when none are named), in the parent's order."""
    graphs = parent.manifest.graphs
    if unknown := [g for g in options.graphs if g not in graphs]:
        raise SpeedyError(
            f"--graph {unknown[0]}: the artifact has no such graph",
            f"use one of: {', '.join(graphs)}",
        )
    return [g for g in graphs if not options.graphs or g in options.graphs]


def carry_over(parent: Artifact, workdir: Path, names: Sequence[str]) -> dict[str, GraphEntry]:
    """Copy the files of the parent's graphs `names` into `workdir`, unchanged; their entries."""
    for name in names:
        for file in parent.manifest.graphs[name].files:
            (workdir / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(parent.path / file, workdir / file)
    return {name: parent.manifest.graphs[name] for name in names}


def check_kind(
    parent: Artifact | None,
    kind: str,
    what: str,
    fix: str,
    graphs: Sequence[str] | None = None,
) -> Artifact:
    """The parent, after checking that its graphs (`graphs`, default all) are of `kind`."""
    if parent is None:
        raise SpeedyError(f"{what} takes {kind} artifacts", fix)
    for name in parent.manifest.graphs if graphs is None else graphs:
        found = parent.manifest.graphs[name].kind
        if found != kind:
            where = "" if len(parent.manifest.graphs) == 1 else f" (graph '{name}')"
            raise SpeedyError(f"{what} takes {kind} artifacts, not {found}{where}", fix)
    return parent


def cached(out_dir: Path, fingerprint: str) -> Artifact | None:
    """The artifact at `out_dir` if it was made from the same inputs and options."""
    try:
        artifact = Artifact.open(out_dir)
    except SpeedyError:
        return None
    return artifact if artifact.manifest.lineage.fingerprint == fingerprint else None


def reuse_or_execute(
    stage: Stage,
    parent: Artifact | None,
    out_dir: Path,
    ctx: StageContext,
    force: bool = True,
    reuse: bool = True,
) -> tuple[Artifact, float | None]:
    """With `reuse`, the artifact at `out_dir` when made from the same inputs and options;
    else `stage` run into it (replacing what is there only with `force`). With the seconds the
    run took (None when reused)."""
    artifact = cached(out_dir, stage.fingerprint(parent, ctx.spec)) if reuse else None
    if artifact is not None:
        return artifact, None
    start = time.perf_counter()
    artifact = execute(stage, parent, out_dir, ctx, force)
    return artifact, time.perf_counter() - start


def execute(
    stage: Stage, parent: Artifact | None, out_dir: Path, ctx: StageContext, force: bool = False
) -> Artifact:
    """Run `stage` into `out_dir` atomically: build, write the manifest, validate, rename."""
    with atomic_dir(out_dir, force) as workdir:
        draft = stage.build(parent, workdir, ctx)
        graphs = pool_shared_weights(workdir, draft.graphs)
        files = directory_files(workdir)
        manifest = Manifest(
            model=ctx.spec,
            graphs=graphs,
            files=files,
            digest=files_digest(files),
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
    return Artifact.open(out_dir, verify=False)
