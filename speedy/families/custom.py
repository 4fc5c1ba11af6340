"""`custom`: a network from the user's own `--model module:function`, exported without a family.

Its settings are a short typed I/O spec (`--io`: a YAML file, or inline YAML/JSON):

    inputs:
      - {name: mel, dtype: float32, shape: [batch, 80, frames], fill: normal}
    outputs: [audio]            # names, in the order forward returns them (any rank)
    dims: {batch: {min: 1, opt: 1, max: 4}, frames: {min: 8, opt: 64, max: 1024}}
    audio: {output: audio, sample_rate: 22050}   # or omitted: no audio output
    parity: {sizes: [{frames: 17}], atol: 1.0e-4}  # optional

Its task is `generic`; each output's dims are named `<output>_d0`, `<output>_d1`, ..., with the
rank read by running the network once at the `opt` sizes.
"""

import inspect
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from speedy.audio.mel import AudioSpec, standard_audio
from speedy.errors import SpeedyError, first_invalid
from speedy.families.base import SINGLE, Family, GraphDef
from speedy.model_spec import ParityOptions
from speedy.plain_data import load_yaml
from speedy.specs import DimRange, Feeds, TensorSpec, symbols
from speedy.tasks.generic import GenericInput, GenericSettings

NO_AUDIO_RATE = 16000
PARITY_CAP = 256  # the largest size a default parity check uses, to keep it quick


class AudioOutput(BaseModel):
    """The output that is a waveform, and its sample rate."""

    model_config = ConfigDict(extra="forbid")

    output: str
    sample_rate: PositiveInt


class IOSpec(BaseModel):
    """A custom network's inputs (with how examples fill them), outputs, dim ranges, audio."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[GenericInput] = Field(min_length=1)
    outputs: list[str | TensorSpec] = Field(min_length=1)
    dims: dict[str, DimRange]
    audio: AudioOutput | None = None
    parity: ParityOptions | None = None

    @property
    def output_names(self) -> list[str]:
        return [o if isinstance(o, str) else o.name for o in self.outputs]

    @model_validator(mode="after")
    def _consistent(self) -> "IOSpec":
        names = [i.name for i in self.inputs] + self.output_names
        if len(set(names)) != len(names):
            raise ValueError(f"input and output names must differ from each other: {names}")
        if missing := [s for s in symbols(self.inputs) if s not in self.dims]:
            raise ValueError(f"dims has no range for {missing}")
        if self.audio is not None and self.audio.output not in self.output_names:
            raise ValueError(f"audio.output {self.audio.output!r} is not one of the outputs")
        return self

    def audio_spec(self) -> AudioSpec:
        """The sample rate of the audio output (or 16 kHz), with standard mel settings."""
        return standard_audio(self.audio.sample_rate if self.audio else NO_AUDIO_RATE)

    def parity_options(self) -> ParityOptions:
        """The spec's parity sizes, or each dim at its smallest size and at twice its typical
        one (within its range, at most PARITY_CAP)."""
        if self.parity is not None:
            return self.parity
        low = {d: r.min for d, r in self.dims.items()}
        high = {d: max(r.min, min(r.max, 2 * r.opt, PARITY_CAP)) for d, r in self.dims.items()}
        typical = {d: r.opt for d, r in self.dims.items()}
        sizes = [s for s in (low, high) if s != typical] or [low]
        return ParityOptions(sizes=list({json.dumps(s): s for s in sizes}.values()))


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except OSError:  # inline text too long for a file name
        return False


def read_io_spec(text: str) -> IOSpec:
    """An I/O spec from a YAML file's path or inline YAML/JSON, validated."""
    if not _is_file(text) and text.endswith((".yaml", ".yml", ".json")):
        raise SpeedyError(f"--io file not found: {text}", "check the path")
    try:
        raw = load_yaml(Path(text).read_text() if _is_file(text) else text)
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
        raise SpeedyError(
            f"--io is neither a readable YAML file nor valid YAML/JSON ({type(exc).__name__})",
            "pass the path of a YAML file, or the spec inline",
        ) from exc
    except SpeedyError as exc:
        raise SpeedyError(f"--io: {exc.problem}", exc.fix) from exc
    if not isinstance(raw, dict):
        raise SpeedyError(
            f"--io {text!r} is not a file and holds no settings",
            "pass a YAML file's path, or inline YAML/JSON with inputs, outputs and dims",
        )
    try:
        return IOSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpeedyError(
            f"--io {first_invalid(exc, 'spec')}",
            "give inputs ({name, dtype, shape, fill}), outputs (names) and dims "
            "({name: {min, opt, max}}), see `speedy export --help`",
        ) from exc


class Custom(Family):
    """A network the user's factory builds, described by an I/O spec."""

    name: ClassVar[str] = "custom"
    Params: ClassVar[type[BaseModel]] = IOSpec
    task: ClassVar[str] = "generic"
    checkpoint_fix: ClassVar[str] = (
        "pass a state dict of the network --model builds: torch.save(model.state_dict(), path)"
    )
    params: IOSpec

    def build(self) -> torch.nn.Module:
        raise SpeedyError(
            "a custom network is built by its factory, which this model spec does not name",
            "pass --model module:function",
        )

    def adapt_state_dict(self, state: dict[str, Any]) -> dict[str, torch.Tensor]:
        return state

    def graphs(self) -> list[GraphDef]:
        outputs = [o for o in self.params.outputs if isinstance(o, TensorSpec)]
        if len(outputs) != len(self.params.outputs):
            raise SpeedyError(
                "the custom model's output ranks are unknown", "build its spec with custom_spec"
            )
        inputs = [TensorSpec(**i.model_dump(exclude={"fill"})) for i in self.params.inputs]
        return [GraphDef(SINGLE, inputs, outputs)]

    def task_settings(self) -> dict[str, Any]:
        audio = self.params.audio
        settings = GenericSettings(
            inputs=self.params.inputs, audio_output=audio.output if audio else None
        )
        return settings.model_dump()

    def dummy_feeds(self, graph: str, sizes: dict[str, int], seed: int = 0) -> Feeds:
        rng = np.random.default_rng(seed)
        return {i.name: i.make(i.resolve(sizes), rng) for i in self.params.inputs}


def check_input_names(io: IOSpec, network: torch.nn.Module) -> None:
    """A SpeedyError unless `io` names its inputs as `forward` names its parameters, in order
    (the exporter gives each parameter its dynamic dims by name); a `*args` forward takes any."""
    parameters = inspect.signature(network.forward).parameters.values()
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return
    positional = [
        p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    names = [i.name for i in io.inputs]
    if names != positional[: len(names)]:
        raise SpeedyError(
            f"--io names the inputs {', '.join(names)}, but the network's forward takes "
            f"({', '.join(positional)})",
            "name --io's inputs after forward's parameters, in the same order",
        )


def with_outputs(io: IOSpec, network: torch.nn.Module) -> IOSpec:
    """`io` with each output's dtype and rank, read by running `network` at the `opt` sizes."""
    sizes = {d: r.opt for d, r in io.dims.items()}
    feeds = Custom(io, io.audio_spec()).dummy_feeds(SINGLE, sizes)
    try:
        with torch.no_grad():
            result = network(*(torch.from_numpy(feeds[i.name]) for i in io.inputs))
    except Exception as exc:
        raise SpeedyError(
            f"the network fails on inputs of the --io spec at the typical sizes {sizes} "
            f"({type(exc).__name__}: {next(iter(str(exc).splitlines()), '')})",
            "make --io's inputs (order, shapes, dtypes) what the network's forward takes",
        ) from exc
    results = list(result) if isinstance(result, tuple | list) else [result]
    if len(results) != len(io.outputs) or not all(isinstance(r, torch.Tensor) for r in results):
        raise SpeedyError(
            f"the network returns {len(results)} value(s), --io names {len(io.outputs)} "
            f"outputs ({', '.join(io.output_names)})",
            "name one output per tensor forward returns, in order",
        )
    outputs = [
        TensorSpec(
            name=name,
            dtype=str(value.dtype).removeprefix("torch."),
            shape=[f"{name}_d{axis}" for axis in range(value.dim())],
        )
        for name, value in zip(io.output_names, results, strict=True)
    ]
    return io.model_copy(update={"outputs": outputs})
