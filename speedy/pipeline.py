"""`speedy run`: chain a recipe's stages into build/<recipe>/<stage>/, reusing unchanged ones."""

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from speedy.artifact import Artifact
from speedy.audio.cache import FeatureCache, default_cache_dir
from speedy.console import console, shown
from speedy.errors import SpeedyError, first_invalid
from speedy.model_spec import ModelSpec
from speedy.recipe import Recipe
from speedy.stages.base import Stage, StageContext, reuse_or_execute
from speedy.stages.compile import CompileStage
from speedy.stages.export import ExportStage
from speedy.stages.import_onnx import ImportStage
from speedy.stages.load import LoadStage
from speedy.stages.options import (
    CompileOptions,
    ExportOptions,
    ImportOptions,
    LoadOptions,
    Options,
    QuantizeOptions,
    SimplifyOptions,
)
from speedy.stages.quantize import QuantizeStage
from speedy.stages.simplify import SimplifyStage
from speedy.tasks import task_for

STAGES: dict[str, tuple[type[Stage], type[Options]]] = {
    "export": (ExportStage, ExportOptions),
    "simplify": (SimplifyStage, SimplifyOptions),
    "compile": (CompileStage, CompileOptions),
    "quantize": (QuantizeStage, QuantizeOptions),
}


def make_stage(name: str, settings: Options | dict[str, Any]) -> Stage:
    """A stage from its typed options, or from settings validated into them."""
    stage_type, options_type = STAGES[name]
    if isinstance(settings, Options):
        return stage_type(settings)
    try:
        return stage_type(options_type.model_validate(settings))
    except ValidationError as exc:
        raise SpeedyError(
            f"{name} options: {first_invalid(exc)}",
            f"fix the `{name}` settings",
        ) from exc


def context_for(spec: ModelSpec, data: Path | None, threads: int) -> StageContext:
    """The model spec, its task and the real examples (feature-cached) stages check against;
    `data` None: the task's default data."""
    cache = FeatureCache(default_cache_dir())
    task = task_for(spec)
    examples = task.read_data(data or task.default_data, cache)
    console.print(cache.summary())
    return StageContext(spec=spec, task=task, examples=examples, threads=threads)


def first_stage(recipe: Recipe, checkpoint: Path | None) -> Stage:
    """The stage a recipe's model enters by: its ONNX file imported, or its network loaded."""
    if recipe.onnx is not None:
        config = recipe.config_path()
        return ImportStage(ImportOptions(model=recipe.onnx_path(), config=config))
    return LoadStage(LoadOptions(checkpoint=checkpoint))


@dataclass
class Outcome:
    stage: str
    artifact: Artifact
    reused: bool
    seconds: float


def _owned_by_run(out_dir: Path, stage: str) -> bool:
    """Whether `out_dir` holds an earlier run's output of `stage` (safe to replace when stale)."""
    try:
        return Artifact.open(out_dir, verify=False).manifest.lineage.stage == stage
    except SpeedyError:
        return False


def run_recipe(
    recipe: Recipe,
    build_dir: Path,
    checkpoint: Path | None = None,
    data: Path | None = None,
    threads: int = 2,
    force: bool = False,
) -> tuple[list[Outcome], StageContext]:
    """Run the recipe's stages in order, reusing a stage whose inputs and options are unchanged."""
    checkpoint = checkpoint or recipe.checkpoint_path()
    ctx = context_for(recipe.model_spec(checkpoint=checkpoint), data or recipe.data_dir(), threads)
    stages = [first_stage(recipe, checkpoint)]
    stages += [make_stage(name, getattr(recipe, name)) for name in recipe.stages]
    outcomes: list[Outcome] = []
    parent: Artifact | None = None
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        for stage in stages:
            out_dir = build_dir / recipe.name / stage.name
            task = progress.add_task(f"{recipe.name}: {stage.name}", total=None)
            start = time.perf_counter()
            replace = force or _owned_by_run(out_dir, stage.name)
            artifact, built = reuse_or_execute(stage, parent, out_dir, ctx, replace, not force)
            seconds = time.perf_counter() - start
            progress.remove_task(task)
            state = (
                "reused (inputs and options unchanged)"
                if built is None
                else (f"built in {seconds:.1f} s")
            )
            console.print(f"[green]✓[/] {stage.name}: {shown(out_dir)} {state}")
            outcomes.append(Outcome(stage.name, artifact, built is None, seconds))
            parent = artifact
    return outcomes, ctx
