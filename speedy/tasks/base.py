"""The task contract: what a model is for, owned in one module per task.

A task knows its data and front end (examples -> the inputs of one run), how its graphs are run
together (a vocoder runs one graph; a codec an encoder then a decoder), what its outputs mean
(seconds of audio, waveforms, what a chained next model takes), how two runs' outputs are
compared and which budget a quantized model must meet by default. Streaming, a user's controls,
served requests and uploads are capabilities only some tasks have (`speedy.tasks.capabilities`).
Generic code (stages, quantize, bench, synth) calls these and never asks which task or family it
has.
"""

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from speedy.audio.cache import FeatureCache
from speedy.audio.mel import AudioSpec
from speedy.errors import SpeedyError
from speedy.model_spec import ModelSpec
from speedy.quality import Budget, measure, parse_budget
from speedy.runtime import Model, Session
from speedy.specs import Feeds, TensorSpec

Figures = dict[str, float | None]  # a metric's value, None where it could not be measured
AUDIO = "audio"  # what a task produces when its outputs are sound


@dataclass(frozen=True)
class Imported:
    """What `speedy import` knows of a graph: its I/O and the user's import options."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    config: dict[str, Any] | None = None  # the model's own config file (a Piper .onnx.json)
    fills: dict[str, str] = field(default_factory=dict)  # input -> how examples are made
    audio_output: str | None = None  # the output that is a waveform


class NoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class CodeSpace:
    """Discrete speech codes as a model makes or decodes them."""

    codebooks: int
    size: int  # codes per codebook
    rate: float  # frames of codes per second

    def __str__(self) -> str:
        books = "1 codebook" if self.codebooks == 1 else f"{self.codebooks} codebooks"
        return f"{books} of {self.size:,} codes at {self.rate:g} Hz"


class Task(ABC):
    """What a model does: data in, outputs out, and how good they are."""

    name: ClassVar[str]
    Settings: ClassVar[type[BaseModel]] = NoSettings  # model facts, from the family
    consumes: ClassVar[str]  # what its inputs are made from ("mel", "text", "audio")
    produces: ClassVar[str]  # what its outputs hand to a chained model ("audio", "mel")
    data_suffixes: ClassVar[tuple[str, ...]]  # files a data source of this task holds
    data_kind: ClassVar[str]  # those files, in words
    metrics: ClassVar[dict[str, bool]]  # figures `compare` can give -> higher is better
    report_metrics: ClassVar[tuple[str, ...]]  # what a quantized artifact's report holds
    bench_metrics: ClassVar[tuple[str, ...]]  # what bench compares with the reference
    rank_by: ClassVar[str]  # the metric quantization sensitivity is ranked by by default
    default_budget: ClassVar[str]  # what a quantized model must meet when no budget is given
    crop_dims: ClassVar[tuple[str, ...] | None] = None  # dims calibration may cut (None: all)
    batch_dim: ClassVar[str] = "batch"  # the dim that counts the items of a run
    runs_note: ClassVar[str | None] = None  # how runs on data differ from requests, for reports

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.settings = self.Settings.model_validate(spec.task_settings)

    @property
    def audio(self) -> AudioSpec:
        return self.spec.audio

    @classmethod
    def imported_settings(cls, graph: Imported) -> dict[str, Any]:
        """The task settings of an ONNX graph made elsewhere (`speedy import`)."""
        raise SpeedyError(
            f"speedy cannot import a {cls.name} model", "import it with --task generic"
        )

    # Data and front end.
    @property
    @abstractmethod
    def default_data(self) -> Path:
        """What `read_data` reads unless told otherwise."""

    @abstractmethod
    def read_data(self, source: Path, cache: FeatureCache) -> list[Any]:
        """The examples in a data source (features, sentences...), front end applied where it
        is the same for every artifact (audio features are cached by content hash)."""

    @property
    def example_rate(self) -> float:
        """Steps per second of audio along an example's last axis (mel frames by default)."""
        return self.audio.sample_rate / self.audio.hop_length

    @abstractmethod
    def inputs(self, example: Any) -> Feeds:
        """The inputs of one whole-utterance run of an example."""

    @abstractmethod
    def sized_inputs(self, examples: Sequence[Any], sizes: Mapping[str, int]) -> Feeds:
        """Inputs with the given symbolic sizes (batch, length...), cut or tiled from real
        examples."""

    def recordings(self, source: Path, count: int) -> list[Path] | None:
        """The recordings the examples of `source` were made from, when each example is one
        (a vocoder's: its clips), for figures of the source itself; else None."""
        return None

    # Running and outputs.
    def run(self, model: Model, inputs: Feeds) -> Feeds:
        """One run: the model's graphs in the task's order (by default its only graph)."""
        return model.run(inputs)

    def exercise(self, model: Model, inputs: Feeds) -> None:
        """Run every graph as the task uses it (what `graph_feeds` records): by default one
        `run`; a task with a graph `run` leaves out (a streaming step) runs that one too."""
        self.run(model, inputs)

    @abstractmethod
    def seconds(self, outputs: Feeds) -> float:
        """Seconds of audio the outputs of one run stand for."""

    def waveforms(self, outputs: Feeds) -> list[np.ndarray] | None:
        """Each item's waveform, or None for a task whose outputs are not audio."""
        return None

    def chained_inputs(self, handed: Any) -> Feeds:
        """The inputs of one run of what a chained first model handed on (an example, by
        default)."""
        return self.inputs(handed)

    def handoff(self, outputs: Feeds) -> list[Any]:
        """Per item, what a chained next model takes as an example (`produces`)."""
        waves = self.waveforms(outputs)
        if waves is None:
            raise SpeedyError(f"a {self.name} model hands nothing on", "chain another model")
        return waves

    def handoff_pieces(self, model: Model, inputs: Feeds) -> Iterator[Any]:
        """What one item's run hands a chained model, piece by piece as it is made (by default
        all of it, once: an autoregressive model hands on each step's)."""
        yield from self.handoff(self.run(model, inputs))[:1]

    # Quality.
    @abstractmethod
    def compare(
        self,
        reference: Feeds,
        test: Feeds,
        metrics: Sequence[str],
        failures: list[str] | None = None,
    ) -> Figures:
        """`metrics` of one run's `test` outputs against the `reference` outputs; a metric that
        cannot be measured is None, its reason appended to `failures`."""

    def evaluate(
        self, expected: Feeds, candidate: Model, inputs: Feeds, metrics: Sequence[str]
    ) -> Figures:
        """`metrics` of `candidate` on `inputs` against the reference's outputs `expected` (a
        task may run the candidate more than once, e.g. under teacher forcing)."""
        return self.compare(expected, self.run(candidate, inputs), metrics)

    def float_tails(self, graph: str) -> list[str]:
        """Weight-name prefixes of the layers of `graph` from which on quantization keeps it in
        float by default, to its outputs (a codec's nearest-codebook search); none by default."""
        return []

    def budgets(self, text: str | None) -> list[Budget]:
        """A quality budget on this task's metrics: `text`, else the task's default."""
        return parse_budget(text or self.default_budget, self.metrics)

    def twin_of(self, graph: str) -> str | None:
        """The graph that `graph` computes a chunk at a time (a streaming step graph's whole
        graph): quantized together, the two keep float activations (or, without
        `exact_stream`, static INT8 gives the step that graph's scales). None: no such graph."""
        return None

    def code_space(self) -> CodeSpace | None:
        """The codes the model makes (a codes model) or decodes (a codec); None: no codes."""
        return None

    # Speed.
    def measure(self, model: Model, inputs: Feeds) -> dict[str, float]:
        """Speed figures of one run beyond the real-time factor (e.g. per-step times of an
        autoregressive model); none by default."""
        return {}


class AudioOut(Task):
    """A task whose outputs hold one waveform per item under `audio_output`."""

    produces: ClassVar[str] = AUDIO
    audio_output: ClassVar[str] = AUDIO

    def seconds(self, outputs: Feeds) -> float:
        return outputs[self.audio_output].size / self.audio.sample_rate

    def waveforms(self, outputs: Feeds) -> list[np.ndarray]:
        return [item.reshape(-1) for item in outputs[self.audio_output]]

    def compare(
        self,
        reference: Feeds,
        test: Feeds,
        metrics: Sequence[str],
        failures: list[str] | None = None,
    ) -> Figures:
        """Waveform metrics, aligned first (a few samples of delay or length still compare)."""
        ref, tst = (np.concatenate(self.waveforms(o)) for o in (reference, test))
        return measure(ref, tst, self.audio.sample_rate, metrics, failures)


def makes_audio(task: Task) -> bool:
    """Whether the task's outputs are sound (DNSMOS, listening, audio metrics apply)."""
    return task.produces == AUDIO


def chains(first: Task, second: Task) -> bool:
    """Whether `second` takes what `first` makes (its kind of example, or codes of the code
    space it decodes), and makes sound of it."""
    codes = first.code_space()
    decodes = codes is not None and codes == second.code_space()
    return (first.produces == second.consumes or decodes) and makes_audio(second)


class _Recorder(Session):
    """A session that keeps (up to `limit` of) the feeds it is run with."""

    def __init__(self, inner: Session, limit: int) -> None:
        super().__init__(inner.name, inner.graph, inner.dims)
        self.inner, self.limit = inner, limit
        self.calls: list[Feeds] = []

    def run(self, feeds: Mapping[str, np.ndarray]) -> Feeds:
        if len(self.calls) < self.limit:  # copies: a runtime may update its buffers in place
            self.calls.append({name: np.array(value) for name, value in feeds.items()})
        return self.inner.run(feeds)

    def _run(self, feeds: Mapping[str, np.ndarray]) -> Feeds:
        return self.inner._run(feeds)


def graph_feeds(task: Task, model: Model, inputs: Feeds, limit: int = 4) -> dict[str, list[Feeds]]:
    """What each graph of `model` is fed when the task runs `inputs` (its first `limit` calls):
    real inputs for graphs fed by other graphs, for parity, calibration and profiles. A graph
    that takes the inputs themselves gets them as they are; the model runs only when some
    other graph's feeds must be recorded."""
    direct = {
        name: [inputs]
        for name in model.graphs
        if set(inputs) == {spec.name for spec in model[name].inputs}
    }
    if len(direct) == len(model.graphs):
        return direct
    recorders = {name: _Recorder(model[name], limit) for name in model.graphs}
    task.exercise(Model(model.artifact, recorders), inputs)
    return {name: recorders[name].calls for name in model.graphs} | direct
