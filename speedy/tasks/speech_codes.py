"""Speech codes: an autoregressive TTS model (IndexTTS2-style GPT) turning text into speech codes,
one code per step, through a `prefill` and a `decode` graph that pass a KV cache.

Graph contract. `prefill`: `speaker_latents` float32 (batch, cond, d), `emotion` float32
(batch, d), `text_ids` int64 (batch, text), `attention_mask` int64 (batch, text) (1 = a real
token, right padding) -> `logits` float32 (batch, vocab), `hidden`, `cache_mask` int64
(batch, past) and `present_key_{i}` / `present_value_{i}` (batch, heads, past, head_dim).
`decode`: `token` int64 (batch, 1), `position` int64 (batch, 1) (the code's speech position),
`cache_mask` int64 (batch, slots) (1 = the slot holds a key) and `cache_key_{i}` /
`cache_value_{i}` (batch, heads, slots, head_dim) -> `logits`, `hidden` and `new_key_{i}` /
`new_value_{i}` (batch, heads, 1, head_dim), the step's own key and value.

Generation runs here, the same loop for every backend: prefill, then one decode step per code,
the cache kept in one preallocated buffer per layer that grows by GROW slots when full (the
graph reads it in place; each step writes one slot),
each step's code chosen outside the graphs (greedy or seeded sampling, `speedy.tasks.sampling`),
until every item has emitted the stop code, `max_codes` codes, or exactly `target_codes` codes
and then the stop (duration control: the stop code is held back until then, and forced there).
Examples are sentences, each said by a speaker; without the conditioning encoders of a trained
system (not built here), a speaker's latents and an emotion vector are seeded stand-ins. Quality
compares two runs' codes: greedy agreement, the step of first divergence, the stop step, and the
mean KL divergence of the next-code distributions under teacher forcing (the candidate fed the
reference's codes).
"""

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt

from speedy.audio.cache import FeatureCache
from speedy.data_source import TEXT_SUFFIXES, text_lines
from speedy.errors import SpeedyError
from speedy.runtime import Model, Session
from speedy.specs import Feeds
from speedy.tasks.base import CodeSpace, Figures
from speedy.tasks.capabilities import TakesControls
from speedy.tasks.sampling import Sampling, kl_divergence, pick
from speedy.text import TextFrontEnd, vocabulary

DEFAULT_TEXTS = Path(str(files("speedy") / "data" / "calibration" / "eval_texts_zh_en.txt"))
SPEAKERS = 4  # seeded stand-in speakers the examples take turns over
CONTEXTS = (50, 500, 1500)  # cache lengths the per-code decode time is measured at
GROW = 128  # cache slots added when the buffers are full
TEXT_OFFSET = 2  # text ids 0 and 1 are the graph's own start and stop of text


class SpeechCodesSettings(BaseModel):
    """The model's shape and its code and text vocabularies (from the family)."""

    model_config = ConfigDict(extra="forbid")

    layers: PositiveInt
    heads: PositiveInt
    head_dim: PositiveInt
    d_model: PositiveInt
    cond_latents: PositiveInt
    text_vocab: PositiveInt
    speech_vocab: PositiveInt
    start_code: int
    stop_code: int
    max_text_tokens: PositiveInt
    max_new_codes: PositiveInt
    position_offset: PositiveInt
    codes_per_second: PositiveFloat
    generate_codes: PositiveInt = 200  # codes per run for parity, quality and bench


class Generation(BaseModel):
    """How many codes to generate and how each is chosen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_codes: PositiveInt = 200
    target_codes: PositiveInt | None = None  # duration control: exactly this many codes
    stop: bool = True  # end an item at its stop code
    sampling: Sampling = Field(default_factory=Sampling)


class SpeechCodesControls(BaseModel):
    """One request: text, a speaker, an emotion, and how to generate."""

    model_config = ConfigDict(extra="forbid")

    text: str
    speaker: int = 0
    emotion: int = 0
    generation: Generation = Field(default_factory=Generation)


@dataclass(frozen=True)
class Sentence:
    """One sentence of a data source and the speaker to say it."""

    where: str
    text: str
    ids: np.ndarray  # int64 text ids
    speaker: int


@dataclass
class Cache:
    """The state between two decode steps: one buffer of slots per layer's keys and values,
    which slots hold one, how many are used, and how many codes were fed back."""

    mask: np.ndarray  # int64 [batch, slots]: 1 = the slot holds a key
    tensors: dict[str, np.ndarray]  # cache_key_{i} / cache_value_{i} [batch, heads, slots, dim]
    length: int  # slots in use: the next step's key goes to slot `length`
    steps: int = 0

    @classmethod
    def of(cls, mask: np.ndarray, presents: Mapping[str, np.ndarray], room: int) -> "Cache":
        """A cache holding `presents` [batch, heads, past, dim] with `room` free slots after."""
        length = mask.shape[1]
        tensors = {}
        for name, value in presents.items():
            buffer = np.zeros((*value.shape[:2], length + room, *value.shape[3:]), value.dtype)
            buffer[:, :, :length] = value
            tensors[name.replace("present_", "cache_")] = buffer
        return cls(np.pad(mask, ((0, 0), (0, room))), tensors, length)

    def grow(self, slots: int) -> None:
        """Add `slots` free slots at the end (one copy, every `slots` steps)."""
        self.mask = np.pad(self.mask, ((0, 0), (0, slots)))
        self.tensors = {
            name: np.pad(value, ((0, 0), (0, 0), (0, slots), (0, 0)))
            for name, value in self.tensors.items()
        }

    def feed(self, decode: Session, feeds: Feeds) -> Feeds:
        """Run a decode step graph on `feeds`, the cache mask and the slots (grown by GROW
        when full), and write the step's `new_*` keys and values into the next free slot; its
        outputs."""
        if self.length == self.mask.shape[1]:
            self.grow(GROW)
        outputs = decode.run(feeds | {"cache_mask": self.mask} | self.tensors)
        for name, value in outputs.items():
            if name.startswith("new_"):
                self.tensors[name.replace("new_", "cache_")][:, :, self.length] = value[:, :, 0]
        self.mask[:, self.length] = 1
        self.length, self.steps = self.length + 1, self.steps + 1
        return outputs


def timed_step(
    step: Callable[[Cache], object], shape: tuple[int, int, int], length: int, repeats: int = 5
) -> float:
    """Median seconds of one `step` over a random cache of `length` used slots, fresh for each
    call; `shape` is (layers, heads, head size)."""
    layers, heads, head_dim = shape
    rng = np.random.default_rng(0)
    presents = {
        f"present_{kind}_{i}": rng.standard_normal((1, heads, length, head_dim)).astype(np.float32)
        for i in range(layers)
        for kind in ("key", "value")
    }
    seconds = []
    for _ in range(repeats + 1):
        cache = Cache.of(np.ones((1, length), np.int64), presents, room=1)
        start = time.perf_counter()
        step(cache)
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds[1:]))


@dataclass
class Run:
    """Codes chosen so far, each step's logits, and which items have stopped."""

    codes: list[np.ndarray] = field(default_factory=list)  # int64 [batch] per step
    logits: list[np.ndarray] = field(default_factory=list)  # float32 [batch, vocab] per step
    stopped: np.ndarray | None = None  # bool [batch]


class TextToCodes(TakesControls):
    """Text to speech codes, autoregressively: sentences in, codes out, judged by how many
    codes two runs share and how far their next-code distributions are."""

    consumes: ClassVar[str] = "text"
    produces: ClassVar[str] = "codes"
    data_suffixes: ClassVar[tuple[str, ...]] = TEXT_SUFFIXES
    data_kind: ClassVar[str] = "text (.txt)"
    metrics: ClassVar[dict[str, bool]] = {
        "agreement": True,
        "divergence": True,
        "stop_diff": False,
        "kl": False,
    }
    report_metrics: ClassVar[tuple[str, ...]] = ("agreement", "divergence", "stop_diff", "kl")
    bench_metrics: ClassVar[tuple[str, ...]] = ("agreement", "divergence", "stop_diff", "kl")
    rank_by: ClassVar[str] = "kl"
    default_budget: ClassVar[str] = "agreement>=0.9"
    crop_dims: ClassVar[tuple[str, ...]] = ()  # prompts and caches are never cut

    @property
    def default_data(self) -> Path:
        return DEFAULT_TEXTS


class SpeechCodes(TextToCodes):
    """Text to speech codes, one code per step."""

    name: ClassVar[str] = "speech_codes"
    Settings: ClassVar[type[BaseModel]] = SpeechCodesSettings
    Controls: ClassVar[type[BaseModel]] = SpeechCodesControls

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        assert isinstance(self.settings, SpeechCodesSettings)
        self.s = self.settings
        self.front_end = TextFrontEnd(vocabulary("zh_en_v1"))
        self.generation = Generation(max_codes=self.s.generate_codes)

    # Data: sentences, their text ids and the stand-in conditioning.
    def read_data(self, source: Path, cache: FeatureCache) -> list[Sentence]:
        return [
            Sentence(where, text, self.text_ids(text, where), i % SPEAKERS)
            for i, (where, text) in enumerate(text_lines(source))
        ]

    def text_ids(self, text: str, where: str = "the text") -> np.ndarray:
        """Text ids of the model's text vocabulary, with a clear error past its positions."""
        ids = self.front_end.encode(text, where) + TEXT_OFFSET
        if ids.size > self.s.max_text_tokens:
            raise SpeedyError(
                f"{where} has {ids.size} text tokens, more than the model's text position table "
                f"holds ({self.s.max_text_tokens})",
                "split the text into shorter sentences",
            )
        if ids.max() >= self.s.text_vocab:
            raise SpeedyError(
                f"{where} maps to text id {ids.max()}, the model's text vocabulary has "
                f"{self.s.text_vocab}",
                "use a model whose text vocabulary covers the front end's symbols",
            )
        return ids.astype(np.int64)

    def conditioning(self, speaker: int, emotion: int) -> tuple[np.ndarray, np.ndarray]:
        """Seeded stand-ins for a speaker's latents (cond, d) and an emotion vector (d)."""
        if speaker < 0 or emotion < 0:
            raise SpeedyError(
                f"speaker {speaker} / emotion {emotion}: ids are not negative",
                "pass --speaker and --emotion as 0, 1, 2 ...",
            )
        latents = np.random.default_rng([1, speaker]).standard_normal(
            (self.s.cond_latents, self.s.d_model)
        )
        emotion_vector = 0.1 * np.random.default_rng([2, emotion]).standard_normal(self.s.d_model)
        return latents.astype(np.float32), emotion_vector.astype(np.float32)

    def _prompt(self, rows: Sequence[np.ndarray], speakers: Sequence[int]) -> Feeds:
        """Prefill feeds of right-padded text rows, each with its speaker's conditioning."""
        width = max(row.size for row in rows)
        ids = np.zeros((len(rows), width), np.int64)
        mask = np.zeros((len(rows), width), np.int64)
        for i, row in enumerate(rows):
            ids[i, : row.size], mask[i, : row.size] = row, 1
        latents, emotions = zip(*(self.conditioning(s, 0) for s in speakers), strict=True)
        return {
            "speaker_latents": np.stack(latents),
            "emotion": np.stack(emotions),
            "text_ids": ids,
            "attention_mask": mask,
        }

    def inputs(self, example: Any) -> Feeds:
        if not isinstance(example, Sentence):
            raise SpeedyError(
                "a speech_codes model turns text into codes; it takes no audio or mel input",
                "give it sentences (.txt, one per line)",
            )
        return self._prompt([example.ids], [example.speaker])

    def sized_inputs(self, examples: Sequence[Any], sizes: Mapping[str, int]) -> Feeds:
        """A batch cut from the examples' ids played end to end: item i is shorter by
        i * text / (batch + 1) (padding exercised); speakers take turns."""
        batch, text = sizes.get("batch", 1), sizes["text"]
        stream = np.concatenate([e.ids for e in examples])
        stream = np.tile(stream, -(-batch * text // stream.size))
        rows = [
            stream[i * text : i * text + max(1, text - i * text // (batch + 1))]
            for i in range(batch)
        ]
        return self._prompt(rows, [i % SPEAKERS for i in range(batch)])

    def request(self, controls: BaseModel) -> Feeds:
        assert isinstance(controls, SpeechCodesControls)
        ids = self.text_ids(controls.text)
        prompt = self._prompt([ids], [controls.speaker])
        latents, emotion = self.conditioning(controls.speaker, controls.emotion)
        return prompt | {"speaker_latents": latents[None], "emotion": emotion[None]}

    # Generation.
    def run(self, model: Model, inputs: Feeds) -> Feeds:
        """Greedy generation of up to `generate_codes` codes (the task's `generation`)."""
        return self.generate(model, inputs, self.generation)

    def prefill(self, model: Model, inputs: Feeds) -> tuple[np.ndarray, Cache]:
        """The first code's logits and the cache after the prompt."""
        outputs = model["prefill"].run(inputs)
        presents = {n: v for n, v in outputs.items() if n.startswith("present_")}
        return outputs["logits"], Cache.of(outputs["cache_mask"], presents, GROW)

    def step(self, model: Model, cache: Cache, token: np.ndarray) -> np.ndarray:
        """Feed `token` (int64 [batch]) to the decode graph and write its key and value into the
        next free slot; its logits."""
        self.check_cache(cache)
        position = np.full_like(token[:, None], self.s.position_offset + cache.steps)
        return cache.feed(model["decode"], {"token": token[:, None], "position": position})[
            "logits"
        ]

    def check_cache(self, cache: Cache) -> None:
        """A clear error for a cache of another model (layers, heads or head size)."""
        layers = len(cache.tensors) // 2
        shapes = {value.shape[1:2] + value.shape[3:] for value in cache.tensors.values()}
        expected = {(self.s.heads, self.s.head_dim)}
        if layers != self.s.layers or shapes != expected:
            raise SpeedyError(
                f"the cache holds {layers} layers of {sorted(shapes)} (heads, head size), this "
                f"model has {self.s.layers} of {sorted(expected)}",
                "continue a generation with the cache of the same model",
            )

    def generate(
        self,
        model: Model,
        inputs: Feeds,
        generation: Generation,
        forced: np.ndarray | None = None,
        start: tuple[np.ndarray, Cache] | None = None,
    ) -> Feeds:
        """Codes of the prompt `inputs`, or of a generation already under way (`start`: the
        next logits and the cache, from any backend): int64 `codes` [batch, n] (the stop code
        repeated after an item's stop), `code_lengths` [batch] (codes before the stop), `logits`
        [batch, n, vocab]. With `forced` [batch, n], those codes are fed (teacher forcing)."""
        target = generation.target_codes
        limit = generation.max_codes if target is None else target + 1  # the codes, then the stop
        if limit > self.s.max_new_codes:
            raise SpeedyError(
                f"{limit} codes exceed the model's {self.s.max_new_codes} speech positions",
                f"ask for at most {self.s.max_new_codes} codes, the stop code included",
            )
        logits, cache = start or self.prefill(model, inputs)
        rng = np.random.default_rng(generation.sampling.seed)
        run = Run(stopped=np.zeros(logits.shape[0], bool))
        while True:
            run.logits.append(logits.astype(np.float32))
            code = self._choose(logits, run, generation, rng, len(run.codes))
            if forced is not None:
                code = forced[:, len(run.codes)]
            run.codes.append(code)
            run.stopped |= code == self.s.stop_code
            done = len(run.codes) >= limit or (
                forced is not None and len(run.codes) >= forced.shape[1]
            )
            if done or (generation.stop and forced is None and run.stopped.all()):
                break
            logits = self.step(model, cache, code)
        return self._outputs(run)

    def _choose(
        self,
        logits: np.ndarray,
        run: Run,
        generation: Generation,
        rng: np.random.Generator,
        step: int,
    ) -> np.ndarray:
        logits = logits.astype(np.float64)
        target = generation.target_codes
        if target is not None:  # duration control: `target` codes, then the stop
            logits[:, self.s.stop_code] = np.inf if step == target else -np.inf
        logits[:, self.s.start_code] = -np.inf
        history = np.stack(run.codes, axis=1) if run.codes else np.zeros((len(logits), 0), np.int64)
        code = pick(logits, history, generation.sampling, rng)
        assert run.stopped is not None
        return np.where(run.stopped & generation.stop, self.s.stop_code, code)

    def _outputs(self, run: Run) -> Feeds:
        codes = np.stack(run.codes, axis=1)
        is_stop = codes == self.s.stop_code
        lengths = np.where(is_stop.any(axis=1), is_stop.argmax(axis=1), codes.shape[1])
        return {
            "codes": codes,
            "code_lengths": lengths.astype(np.int64),
            "logits": np.stack(run.logits, axis=1),
        }

    # Outputs and quality.
    def seconds(self, outputs: Feeds) -> float:
        """Seconds of speech the codes stand for (at least one code's)."""
        return max(int(outputs["code_lengths"].sum()), 1) / self.s.codes_per_second

    def code_space(self) -> CodeSpace:
        return CodeSpace(1, self.s.start_code, self.s.codes_per_second)  # start, stop: after

    def handoff(self, outputs: Feeds) -> list[np.ndarray]:
        """Each item's codes before its stop (what a codec's decoder takes)."""
        return [c[:n] for c, n in zip(outputs["codes"], outputs["code_lengths"], strict=True)]

    def compare(
        self,
        reference: Feeds,
        test: Feeds,
        metrics: Sequence[str],
        failures: list[str] | None = None,
    ) -> Figures:
        """`agreement`: the share of the reference's steps where both chose the same code;
        `divergence`: the first step where they differ (the length when none does);
        `stop_diff`: the largest difference of the stop steps; `kl`: the mean KL divergence of
        the next-code distributions over the steps both saw the same codes before."""
        ref, tst = reference["codes"], test["codes"]
        steps = min(ref.shape[1], tst.shape[1])
        same = ref[:, :steps] == tst[:, :steps]
        differ = ~same.all(axis=0)
        first = int(differ.argmax()) if differ.any() else steps
        kl = kl_divergence(reference["logits"][:, : first + 1], test["logits"][:, : first + 1])
        figures = {
            "agreement": float(same.sum() / ref.size),
            "divergence": float(first),
            "stop_diff": float(np.abs(reference["code_lengths"] - test["code_lengths"]).max()),
            "kl": float(kl.mean()),
        }
        return {name: figures[name] for name in metrics}

    def evaluate(
        self, expected: Feeds, candidate: Model, inputs: Feeds, metrics: Sequence[str]
    ) -> Figures:
        """`compare` of a free run, with `kl` under teacher forcing: the candidate fed the
        reference's codes at every step."""
        figures = self.compare(expected, self.run(candidate, inputs), metrics)
        if "kl" in metrics:
            forced = self.generate(candidate, inputs, self.generation, forced=expected["codes"])
            figures["kl"] = float(kl_divergence(expected["logits"], forced["logits"]).mean())
        return figures

    # Speed figures beyond the real-time factor.
    def measure(self, model: Model, inputs: Feeds) -> dict[str, float]:
        """Prefill latency, decode codes per second over the whole generation, the time of one
        decode step at cache lengths CONTEXTS (the cache random, the step real), and the cache's
        bytes per code."""
        start = time.perf_counter()
        logits, cache = self.prefill(model, inputs)
        prefill = time.perf_counter() - start
        code = logits.argmax(axis=-1)
        steps, start = 0, time.perf_counter()
        while steps < self.generation.max_codes - 1:
            code = self.step(model, cache, code).argmax(axis=-1)
            steps += 1
        decode = time.perf_counter() - start
        figures = {
            "prefill_ms": prefill * 1000,
            "decode_codes_per_s": steps / decode if steps else math.nan,
            "kv_bytes_per_code": float(2 * self.s.layers * self.s.heads * self.s.head_dim * 4),
        }
        limit = self.spec.dims["slots"].max
        for length in (c for c in CONTEXTS if c <= limit):
            figures[f"decode_ms_at_{length}"] = 1000 * self.step_seconds(model, length)
        return figures

    def step_seconds(self, model: Model, length: int, repeats: int = 5) -> float:
        """Median seconds of one decode step over a random cache of `length` used slots."""
        shape = (self.s.layers, self.s.heads, self.s.head_dim)
        step = lambda cache: self.step(model, cache, np.zeros(1, np.int64))  # noqa: E731
        return timed_step(step, shape, length, repeats)
