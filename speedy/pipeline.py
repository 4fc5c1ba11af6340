"""`speedy run`: chain a recipe's stages into build/<recipe>/<stage>/, reusing unchanged ones."""

import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ValidationError
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from speedy.artifact import Artifact
from speedy.audio.cache import FeatureCache, default_cache_dir
from speedy.console import console
from speedy.data_source import read_features
from speedy.errors import SpeedyError
from speedy.model_spec import ModelSpec
from speedy.recipe import Recipe
from speedy.stages.base import Stage, StageContext, cached, execute
from speedy.stages.compile import CompileOptions, CompileStage
from speedy.stages.export import ExportOptions, ExportStage
from speedy.stages.load import LoadOptions, LoadStage
from speedy.stages.quantize import QuantizeOptions, QuantizeStage
from speedy.stages.simplify import SimplifyOptions, SimplifyStage

STAGES: dict[str, tuple[type[Stage], type[BaseModel]]] = {
    "export": (ExportStage, ExportOptions),
    "simplify": (SimplifyStage, SimplifyOptions),
    "compile": (CompileStage, CompileOptions),
    "quantize": (QuantizeStage, QuantizeOptions),
}


def make_stage(name: str, settings: dict) -> Stage:
    """A stage from its recipe section, validated into its typed options."""
    stage_type, options_type = STAGES[name]
    try:
        return stage_type(options_type.model_validate(settings))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise SpeedyError(
            f"recipe section '{name}': {'.'.join(map(str, first['loc']))}: {first['msg']}",
            f"fix the recipe's `{name}:` settings",
        ) from exc


def context_for(spec: ModelSpec, data: Path, threads: int) -> StageContext:
    """The model spec and the real features (feature-cached) that stages check against."""
    cache = FeatureCache(default_cache_dir())
    features = read_features(data, spec, cache)
    console.print(cache.summary())
    return StageContext(spec=spec, features=features, threads=threads)


@dataclass
class Outcome:
    stage: str
    artifact: Artifact
    reused: bool
    seconds: float


def _owned_by_run(out_dir: Path, stage: str) -> bool:
    """Whether `out_dir` holds an earlier run's output of `stage` (safe to replace when stale)."""
    try:
        return Artifact.open(out_dir).manifest.lineage.stage == stage
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
    ctx = context_for(recipe.model_spec(), data or recipe.data_dir(), threads)
    load = LoadStage(LoadOptions(checkpoint=checkpoint or recipe.checkpoint_path()))
    stages = [load, *(make_stage(name, getattr(recipe, name)) for name in recipe.stages)]
    outcomes: list[Outcome] = []
    parent: Artifact | None = None
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        for stage in stages:
            out_dir = build_dir / recipe.name / stage.name
            task = progress.add_task(f"{recipe.name}: {stage.name}", total=None)
            start = time.perf_counter()
            artifact = None if force else cached(out_dir, stage.fingerprint(parent, ctx.spec))
            reused = artifact is not None
            if artifact is None:
                replace = force or _owned_by_run(out_dir, stage.name)
                artifact = execute(stage, parent, out_dir, ctx, force=replace)
            seconds = time.perf_counter() - start
            progress.remove_task(task)
            state = (
                "reused (inputs and options unchanged)" if reused else f"built in {seconds:.1f} s"
            )
            console.print(f"[green]✓[/] {stage.name}: {out_dir} {state}")
            outcomes.append(Outcome(stage.name, artifact, reused, seconds))
            parent = artifact
    return outcomes, ctx
