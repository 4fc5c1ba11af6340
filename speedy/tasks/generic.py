"""Generic: tensors in, tensors out, for a graph no task of speedy's describes (a scorer, an
embedding model, a network exported without a family).

Each input says how its example values are made (`fill`): `audio` takes the data's clips at the
model's rate (the waveform along the input's last axis), `mel` their log-mels at the model's mel
settings ([..., n_mels, frames]), `normal` and `uniform:LO,HI` draw seeded floats, `int:LO,HI`
seeded integers (HI excluded), `value:V` a constant; integer scalars must be given a rule. A
`.npz` file of the data gives every input of one example by name. Quality is the tensor error
over every output (SNR in dB, largest and relative error); an output named as audio adds the
audio metrics.
"""

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from speedy.audio.cache import FeatureCache
from speedy.audio.io import AUDIO_SUFFIXES, check_finite, nonfinite, read_audio
from speedy.audio.mel import log_mel
from speedy.data_source import DEFAULT_CLIPS, data_files
from speedy.errors import GraphRunError, SpeedyError, first_invalid
from speedy.quality import AUDIO_METRICS, measure
from speedy.runtime import Model
from speedy.specs import Feeds, TensorSpec, symbol_sizes
from speedy.tasks.base import AUDIO, Figures, Imported, Task

NUMBER = r"[-+.\deE]+"
FILL = re.compile(rf"normal|audio|mel|uniform:{NUMBER},{NUMBER}|int:-?\d+,-?\d+|value:{NUMBER}")
FILL_HELP = "normal, audio, mel, uniform:LO,HI, int:LO,HI or value:V"
CLIP_FILLS = ("audio", "mel")  # inputs the data's clips feed: waveforms, or their log-mels
TENSOR_METRICS = {"tensor_snr": True, "max_error": False, "rel_error": False}
SNR_CAP_DB = 200.0


class GenericInput(TensorSpec):
    """A graph input and how its example values are made."""

    fill: str = "normal"

    @field_validator("fill")
    @classmethod
    def _known(cls, fill: str) -> str:
        if not FILL.fullmatch(fill):
            raise ValueError(f"fill {fill!r} is not one of {FILL_HELP}")
        return fill

    @model_validator(mode="after")
    def _makes_values(self) -> "GenericInput":
        """The rule must make values of the input's dtype: LO below HI, an `int` rule's numbers
        within int64, and every number within the dtype's range (finite as a float)."""
        try:
            with np.errstate(all="ignore"):
                self.make((1,), np.random.default_rng(0))
        except (ValueError, OverflowError, TypeError) as exc:
            raise ValueError(f"{self.fill!r} makes no {self.dtype} values ({exc})") from exc
        dtype = np.dtype(self.dtype)
        if dtype.kind in "iuf":
            limit = float((np.finfo if dtype.kind == "f" else np.iinfo)(dtype).max)
            numbers = [float(n) for n in self.fill.partition(":")[2].split(",") if n]
            if not all(abs(n) <= limit for n in numbers):
                raise ValueError(f"{self.fill!r} reaches beyond {dtype} (±{limit:.4g})")
        return self

    def make(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        """Values of `shape` by the fill rule (`audio`: seeded noise, for a shape no clip gave)."""
        kind, _, args = self.fill.partition(":")
        low, _, high = args.partition(",")
        if kind == "int":
            values = rng.integers(int(low), int(high), shape)
        elif kind == "uniform":
            values = rng.uniform(float(low), float(high), shape)
        elif kind == "value":
            values = np.full(shape, float(low))
        else:
            values = rng.standard_normal(shape) * (0.1 if kind == "audio" else 1.0)
        return values.astype(self.dtype)


class GenericSettings(BaseModel):
    """The inputs with their fill rules, and which output (if any) is a waveform."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[GenericInput]
    audio_output: str | None = None


def tensor_error(reference: Feeds, test: Feeds, names: Sequence[str]) -> Figures:
    """SNR (dB, capped), largest absolute and relative L2 error over the named outputs."""
    ref = np.concatenate([np.asarray(reference[n], np.float64).ravel() for n in names])
    tst = np.concatenate([np.asarray(test[n], np.float64).ravel() for n in names])
    if ref.shape != tst.shape:
        raise SpeedyError(
            f"outputs of {ref.size} and {tst.size} values differ in shape",
            "compare runs of the same inputs",
        )
    if nonfinite(ref) or nonfinite(tst):  # NaN never passes
        return {"tensor_snr": -SNR_CAP_DB, "max_error": math.inf, "rel_error": math.inf}
    noise, power = float(np.sum((ref - tst) ** 2)), float(np.sum(ref**2))
    snr = SNR_CAP_DB if noise == 0 else min(SNR_CAP_DB, 10 * np.log10(max(power, 1e-30) / noise))
    return {
        "tensor_snr": float(snr),
        "max_error": float(np.max(np.abs(ref - tst))) if ref.size else 0.0,
        "rel_error": float(np.sqrt(noise / power)) if power else float(noise > 0),
    }


class Generic(Task):
    """Any graph: examples made by each input's fill rule, quality as tensor error."""

    name: ClassVar[str] = "generic"
    Settings: ClassVar[type[BaseModel]] = GenericSettings
    consumes: ClassVar[str] = "tensors"
    produces: ClassVar[str] = "tensors"  # "audio" for a model with an audio output
    data_suffixes: ClassVar[tuple[str, ...]] = (*AUDIO_SUFFIXES, ".npz")
    data_kind: ClassVar[str] = "audio or .npz"
    metrics: ClassVar[dict[str, bool]] = TENSOR_METRICS
    report_metrics: ClassVar[tuple[str, ...]] = ("tensor_snr", "max_error", "rel_error")
    bench_metrics: ClassVar[tuple[str, ...]] = ("tensor_snr", "max_error", "rel_error")
    rank_by: ClassVar[str] = "tensor_snr"
    default_budget: ClassVar[str] = "tensor_snr>=30"
    settings: GenericSettings

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        if self.settings.audio_output is not None:  # a model that makes sound: audio metrics too
            self.produces = AUDIO
            self.metrics = TENSOR_METRICS | AUDIO_METRICS
            self.bench_metrics = (*self.bench_metrics, "pesq", "mel")
        leading = {spec.shape[0] if spec.shape else None for spec in self.settings.inputs}
        if len(leading) == 1 and isinstance(batch := leading.pop(), str):
            self.batch_dim = batch  # the symbolic first axis every input shares ("N")

    @classmethod
    def imported_settings(cls, graph: Imported) -> dict[str, Any]:
        """Each input filled as `graph.fills` says (default: normal floats, integers 0..1; an
        integer scalar, a sample rate or a flag, only as given)."""
        names = [spec.name for spec in graph.inputs]
        outputs = [spec.name for spec in graph.outputs]
        if unknown := sorted(graph.fills.keys() - set(names)):
            raise SpeedyError(
                f"--fill names {unknown[0]!r}, which is not an input", f"use: {', '.join(names)}"
            )
        if bad := next((f"{n}={r}" for n, r in graph.fills.items() if not FILL.fullmatch(r)), ""):
            raise SpeedyError(f"--fill {bad!r} has no known rule", f"use {FILL_HELP}")
        if graph.audio_output is not None and graph.audio_output not in outputs:
            raise SpeedyError(
                f"--audio-output {graph.audio_output!r} is not an output",
                f"use one of: {', '.join(outputs)}",
            )
        if scalars := [
            s.name
            for s in graph.inputs
            if s.name not in graph.fills
            and not np.issubdtype(np.dtype(s.dtype), np.floating)
            and all(d == 1 for d in s.shape)
        ]:
            raise SpeedyError(
                f"integer scalar input(s) {', '.join(scalars)}: speedy cannot guess their value "
                "(a sample rate, a flag, a count?)",
                " ".join(f"--fill {name}=value:V" for name in scalars),
            )
        inputs = []
        for spec in graph.inputs:
            floating = np.issubdtype(np.dtype(spec.dtype), np.floating)
            fill = graph.fills.get(spec.name, "normal" if floating else "int:0,2")
            try:
                inputs.append(GenericInput(**spec.model_dump(), fill=fill))
            except ValidationError as exc:
                raise SpeedyError(
                    f"--fill {first_invalid(exc, spec.name)}",
                    "give numbers the input's dtype holds, LO below HI",
                ) from exc
        return GenericSettings(inputs=inputs, audio_output=graph.audio_output).model_dump()

    @property
    def clip_input(self) -> GenericInput | None:
        """The input the data's clips feed (`audio` or `mel`), if any."""
        return next((i for i in self.settings.inputs if i.fill in CLIP_FILLS), None)

    @property
    def default_data(self) -> Path:
        """The clips shipped with speedy: fed to an `audio` input; for a model without one,
        each clip stands for one example of seeded values."""
        return DEFAULT_CLIPS

    def read_data(self, source: Path, cache: FeatureCache) -> list[Feeds]:
        examples = []
        for index, path in enumerate(data_files(source, self.data_suffixes, self.data_kind)):
            rng = np.random.default_rng(index)
            if path.suffix == ".npz":
                examples.append(self._complete(self._npz(path), rng))
                continue
            given = {}
            if (clip_input := self.clip_input) is not None:
                wave = read_audio(path, self.audio.sample_rate)
                given[clip_input.name] = self._clip_tensor(clip_input, wave)
            examples.append(self._complete(given, rng))
        return examples

    def _npz(self, path: Path) -> Feeds:
        try:
            with np.load(path, allow_pickle=False) as archive:
                found = {name: archive[name] for name in archive.files}
        except (ValueError, OSError, EOFError) as exc:
            raise SpeedyError(
                f"cannot read {path} as a .npz of arrays: {str(exc).splitlines()[0]}",
                "save the inputs with numpy.savez(path, NAME=array, ...)",
            ) from exc
        names = [i.name for i in self.settings.inputs]
        if unknown := sorted(found.keys() - set(names)):
            raise SpeedyError(
                f"{path} holds {unknown[0]!r}, which is not an input of the model",
                f"name its arrays after the inputs: {', '.join(names)}",
            )
        dtypes = {i.name: i.dtype for i in self.settings.inputs}
        return {
            name: check_finite(value, f"{path}: array {name!r}", dtypes[name])
            for name, value in found.items()
        }

    def _clip_values(self, spec: GenericInput, wave: np.ndarray) -> np.ndarray:
        """What a clip gives `spec`, along its last axis: the waveform (`audio`), or log-mels at
        the model's mel settings with the mels on the axis before (`mel`)."""
        if spec.fill == "audio":
            return wave
        mels = spec.shape[-2] if len(spec.shape) >= 2 else None
        if mels != self.audio.n_mels:
            raise SpeedyError(
                f"input {spec.name!r} {spec.describe()} has no axis of {self.audio.n_mels} mels "
                "before its last (what --fill mel makes)",
                "use fill mel for an input [..., n_mels, frames] with the model's mel count",
            )
        return log_mel(wave, self.audio)

    def _clip_tensor(self, spec: GenericInput, wave: np.ndarray) -> np.ndarray:
        """A clip's values cut or tiled along the input's last axis to its size, ones elsewhere."""
        values = self._clip_values(spec, wave)
        last, found = spec.shape[-1], values.shape[-1]
        if isinstance(last, int):
            length = last
        else:
            limits = self.spec.dims.get(last)
            length = found if limits is None else min(max(found, limits.min), limits.max)
        values = np.tile(values, (1,) * (values.ndim - 1) + (-(-length // found),))[..., :length]
        return values.reshape((1,) * (len(spec.shape) - values.ndim) + values.shape).astype(
            spec.dtype
        )

    def _complete(self, given: Feeds, rng: np.random.Generator) -> Feeds:
        """`given`, plus every other input made by its fill rule at sizes consistent with the
        given ones (else the typical sizes)."""
        specs = self.settings.inputs
        sizes = self.spec.sizes(symbol_sizes(specs, {n: v.shape for n, v in given.items()}))
        return {
            s.name: given[s.name] if s.name in given else s.make(s.resolve(sizes), rng)
            for s in specs
        }

    def inputs(self, example: Feeds) -> Feeds:
        return dict(example)

    def run(self, model: Model, inputs: Feeds) -> Feeds:
        """One run; a graph that fails on its inputs is blamed on the fill rules that made them."""
        try:
            return super().run(model, inputs)
        except GraphRunError as exc:
            rules = ", ".join(f"{i.name}={i.fill}" for i in self.settings.inputs)
            raise GraphRunError(
                exc.problem,
                f"the inputs were made by the fill rules {rules}: import again with the values "
                "the model expects (--fill NAME=RULE), or pass examples as .npz",
            ) from exc

    def sized_inputs(self, examples: Sequence[Feeds], sizes: Mapping[str, int]) -> Feeds:
        """Inputs at `sizes`: the clips' input cut in turn from the examples' waveforms (or
        log-mels) played end to end, one piece per leading row; the others by their rules."""
        rng = np.random.default_rng(0)
        full = self.spec.sizes(dict(sizes))
        feeds = {s.name: s.make(s.resolve(full), rng) for s in self.settings.inputs}
        if (clip_input := self.clip_input) is not None:
            shape = clip_input.resolve(full)
            channels = 1 if clip_input.fill == "audio" else shape[-2]
            rows = int(np.prod(shape)) // (channels * shape[-1])
            stream = np.concatenate(
                [e[clip_input.name].reshape(channels, -1) for e in examples], axis=-1
            )
            needed = rows * shape[-1]
            stream = np.tile(stream, (1, -(-needed // stream.shape[-1])))[:, :needed]
            pieces = np.moveaxis(stream.reshape(channels, rows, shape[-1]), 0, 1)
            feeds[clip_input.name] = pieces.reshape(shape)
        return feeds

    def seconds(self, outputs: Feeds) -> float:
        """Seconds of the audio output; 0 for a model that makes none (no real-time factor)."""
        if self.settings.audio_output is None:
            return 0.0
        return outputs[self.settings.audio_output].size / self.audio.sample_rate

    def waveforms(self, outputs: Feeds) -> list[np.ndarray] | None:
        if self.settings.audio_output is None:
            return None
        return [item.reshape(-1) for item in outputs[self.settings.audio_output]]

    def compare(
        self,
        reference: Feeds,
        test: Feeds,
        metrics: Sequence[str],
        failures: list[str] | None = None,
    ) -> Figures:
        figures = tensor_error(reference, test, sorted(reference))
        found: Figures = {m: figures[m] for m in metrics if m in figures}
        if audio := [m for m in metrics if m not in figures]:
            ref, tst = (np.concatenate(self.waveforms(o) or []) for o in (reference, test))
            found |= measure(ref, tst, self.audio.sample_rate, audio, failures)
        return found
