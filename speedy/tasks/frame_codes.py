"""Frame codes: a Qwen3-TTS-style talker turning text into frames of multi-codebook speech codes,
one frame per step: the talker chooses a frame's first code, its code predictor the other
codebooks one after another, and the whole frame is fed back.

Graph contract (`speedy.families.qwen_tts_graphs` has the shapes): `embed` (text ids -> projected
text embeddings, codec ids -> codec embeddings), `prefill` (the prompt's embeddings -> first
logits, hidden, cache), `decode` (a frame's codes and text embedding over cache slots -> next
logits, hidden, the step's keys and values), `predictor` (the talker's hidden state and the
first code -> the frame's other codes, chosen inside the graph, and their logits).

The loop runs here, the same for every backend, as upstream's `generate` does it: the prompt
(role, codec control codes with the language and speaker, the text's first token; the rest of the
text streamed in, one token per frame, then the pad embedding), the talker's control codes
suppressed but the stop, no stop before the second frame, a repetition penalty over the first
codes, greedy or seeded sampling at both levels, the stop code, at most `max_frames` frames.
Quality compares two runs' codes: agreement over every codebook, the first frame that differs,
the stop frame, and the mean KL divergence of every next-code distribution under teacher forcing.
"""

import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    field_validator,
)

from speedy.audio.cache import FeatureCache
from speedy.data_source import text_lines
from speedy.errors import SpeedyError
from speedy.runtime import Model
from speedy.specs import Feeds
from speedy.tasks.base import CodeSpace, Figures
from speedy.tasks.capabilities import TakesRequests
from speedy.tasks.sampling import Sampling, kl_divergence, pick
from speedy.tasks.speech_codes import CONTEXTS, GROW, Cache, TextToCodes, timed_step
from speedy.text.subwords import text_ids

SPECIAL_CODES = 1024  # the talker vocabulary's last ids: control codes, never chosen but the stop
MIN_FRAMES = 2  # upstream's min_new_tokens: no stop before the third step
ROLE = 3  # "<|im_start|>assistant\n"
TAIL = 5  # "<|im_end|>\n<|im_start|>assistant\n"


class FrameCodesSettings(BaseModel):
    """The talker's shape, its control codes, languages, speakers and text tokenizer."""

    model_config = ConfigDict(extra="forbid")

    groups: PositiveInt
    codebook_size: PositiveInt
    vocab: PositiveInt
    hidden: PositiveInt
    layers: PositiveInt
    kv_heads: PositiveInt
    head_dim: PositiveInt
    predictor_layers: PositiveInt
    predictor_kv_heads: PositiveInt
    predictor_head_dim: PositiveInt
    codes: dict[str, int]  # pad, bos, think, nothink, think_bos, think_eos, eos
    text_tokens: dict[str, int]  # im_start, im_end, pad, bos, eos
    languages: dict[str, int] = Field(default_factory=dict)
    speakers: dict[str, int] = Field(default_factory=dict)
    dialects: dict[str, str] = Field(default_factory=dict)  # speaker -> the dialect it speaks
    text_tokenizer: str | None = None
    generation: dict[str, Any] = Field(default_factory=dict)
    frames_per_second: PositiveFloat = 12.5
    generate_frames: PositiveInt = 100


class FrameGeneration(BaseModel):
    """How many frames to make and how each code is chosen (talker, then code predictor)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_frames: PositiveInt = 100
    stop: bool = True  # False: the stop code is never chosen (always `max_frames` frames)
    sampling: Sampling = Field(default_factory=Sampling)
    predictor: Sampling = Field(default_factory=Sampling)

    @field_validator("predictor")
    @classmethod
    def _no_predictor_penalty(cls, value: Sampling) -> Sampling:
        if value.repetition_penalty != 1.0:
            raise ValueError("the code predictor has no repetition penalty (nor has upstream's)")
        return value


class FrameCodesControls(BaseModel):
    """One request (from Python, the command line or HTTP): text, its language, a speaker
    (none: the model's unconditioned voice) and how to choose codes: greedy at both levels, or
    with a `seed` the model's own sampling (`defaults`) drawn from it, one utterance per seed."""

    model_config = ConfigDict(extra="forbid")

    text: str
    language: str = "auto"
    speaker: str | None = None
    seed: int | None = Field(None, ge=0, lt=2**63)


@dataclass(frozen=True)
class Utterance:
    """One sentence of a data source, its language and the speaker to say it."""

    where: str
    text: str
    language: str
    speaker: str | None


@dataclass
class Frames:
    """Frames made so far, every distribution they were chosen from, which items stopped."""

    codes: list[np.ndarray] = field(default_factory=list)  # int64 [batch, groups] per frame
    logits: list[np.ndarray] = field(default_factory=list)  # [batch, vocab] per talker step
    predictor_logits: list[np.ndarray] = field(default_factory=list)  # [batch, groups-1, size]
    stopped: np.ndarray | None = None  # bool [batch]


class FrameCodes(TextToCodes, TakesRequests):
    """Text to frames of speech codes, one frame per step."""

    name: ClassVar[str] = "frame_codes"
    Settings: ClassVar[type[BaseModel]] = FrameCodesSettings
    Controls: ClassVar[type[BaseModel]] = FrameCodesControls
    Request: ClassVar[type[BaseModel]] = FrameCodesControls

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        assert isinstance(self.settings, FrameCodesSettings)
        self.s = self.settings
        self.tokenizer = text_ids(
            self.s.text_tokenizer,
            {
                "<|im_start|>": self.s.text_tokens["im_start"],
                "<|im_end|>": self.s.text_tokens["im_end"],
                "assistant": 256,
            },
        )
        greedy = Sampling(repetition_penalty=self.defaults.sampling.repetition_penalty)
        self.generation = FrameGeneration(max_frames=self.s.generate_frames, sampling=greedy)

    @property
    def defaults(self) -> FrameGeneration:
        """The model's own generation settings (generation_config.json, else upstream's
        `generate` defaults): sampling at both levels."""
        g = self.s.generation

        def sampling(sample: str, settings: str, penalty: float) -> Sampling:
            if not g.get(sample, True):
                return Sampling(repetition_penalty=penalty)
            return Sampling(
                temperature=g.get(f"{settings}temperature", 0.9),
                top_k=g.get(f"{settings}top_k", 50),
                top_p=g.get(f"{settings}top_p", 1.0),
                repetition_penalty=penalty,
            )

        return FrameGeneration(
            max_frames=max(1, g.get("max_new_tokens", 4096) - 1),
            sampling=sampling("do_sample", "", g.get("repetition_penalty", 1.05)),
            predictor=sampling("subtalker_dosample", "subtalker_", 1.0),
        )

    def choices(self) -> dict[str, list[Any]]:
        return {"speaker": sorted(self.s.speakers), "language": ["auto", *sorted(self.s.languages)]}

    # Data and prompts.
    def read_data(self, source: Path, cache: FeatureCache) -> list[Utterance]:
        speakers = sorted(self.s.speakers) or [None]
        return [
            Utterance(where, text, "auto", speakers[i % len(speakers)])
            for i, (where, text) in enumerate(text_lines(source))
        ]

    def text_ids(self, text: str) -> np.ndarray:
        """The ids of upstream's assistant turn around `text`."""
        turn = f"<|im_start|>assistant\n{text}<|im_end|>\n<|im_start|>assistant\n"
        ids = self.tokenizer.encode(turn)
        if ids.size < ROLE + TAIL + 1:
            raise SpeedyError("the text is empty", "give a sentence to say")
        if ids[0] != self.s.text_tokens["im_start"] or ids[-TAIL] != self.s.text_tokens["im_end"]:
            raise SpeedyError(
                f"the text tokenizer does not make upstream's assistant turn of {ROLE} tokens, "
                f"the text, then {TAIL}",
                "use the tokenizer files of the Qwen3-TTS checkpoint",
            )
        return ids

    def codec_ids(self, language: str, speaker: str | None, where: str = "") -> np.ndarray:
        """The prompt's control codes: think (with the language) or nothink, the speaker's
        code, pad and bos, as upstream's `generate` lays them out."""
        c, language = self.s.codes, language.lower()
        if speaker is not None and speaker.lower() not in self.s.speakers:
            raise SpeedyError(
                f"{where}speaker {speaker!r} is not one of the model's",
                f"use one of: {', '.join(sorted(self.s.speakers)) or '(none: leave it out)'}",
            )
        if language != "auto" and language not in self.s.languages:
            raise SpeedyError(
                f"{where}language {language!r} is not one of the model's",
                f"use auto or one of: {', '.join(sorted(self.s.languages))}",
            )
        dialect = self.s.dialects.get(speaker.lower()) if speaker else None
        code = self.s.languages.get(
            dialect if dialect and language in ("chinese", "auto") else language
        )
        prefix = (
            [c["nothink"], c["think_bos"], c["think_eos"]]
            if code is None
            else [c["think"], c["think_bos"], code, c["think_eos"]]
        )
        spoken = [self.s.speakers[speaker.lower()]] if speaker else []
        return np.array(prefix + spoken + [c["pad"], c["bos"]], np.int64)

    def _prompt(self, utterances: Sequence[Utterance]) -> Feeds:
        rows = [self.text_ids(u.text) for u in utterances]
        codecs = [self.codec_ids(u.language, u.speaker, f"{u.where}: ") for u in utterances]
        return _padded("text", rows) | _padded("codec", codecs)

    def inputs(self, example: Any) -> Feeds:
        if not isinstance(example, Utterance):
            raise SpeedyError(
                "a frame_codes model turns text into codes; it takes no audio or mel input",
                "give it sentences (.txt, one per line)",
            )
        return self._prompt([example])

    def sized_inputs(self, examples: Sequence[Any], sizes: Mapping[str, int]) -> Feeds:
        """A batch of the examples in turn (prompts of their own lengths)."""
        batch = sizes.get("batch", 1)
        return self._prompt([examples[i % len(examples)] for i in range(batch)])

    def request(self, controls: BaseModel) -> Feeds:
        assert isinstance(controls, FrameCodesControls)
        utterance = Utterance("", controls.text, controls.language, controls.speaker)
        seed = {} if controls.seed is None else {"seed": np.array([controls.seed], np.int64)}
        return self._prompt([utterance]) | seed

    # Generation.
    def run(self, model: Model, inputs: Feeds) -> Feeds:
        """Frames up to `generate_frames`: greedy (both levels), or sampled from a request's
        seed."""
        return self.generate(model, inputs, self.generation_for(inputs))

    def generation_for(self, inputs: Feeds) -> FrameGeneration:
        """Greedy, or for inputs with a `seed` the model's own sampling drawn from it; at most
        `generate_frames` either way."""
        if "seed" not in inputs:
            return self.generation
        defaults = self.defaults
        sampling = defaults.sampling.model_copy(update={"seed": int(inputs["seed"][0])})
        return defaults.model_copy(
            update={"max_frames": self.generation.max_frames, "sampling": sampling}
        )

    def embeddings(self, model: Model, inputs: Feeds) -> tuple[np.ndarray, ...]:
        """The prompt's embeddings [batch, seq, hidden] (left padding) and mask, the streamed
        text [batch, n, hidden] (padded with the pad embedding) and the pad embedding."""
        t = self.s.text_tokens
        special = np.array([[t["bos"], t["eos"], t["pad"]]], np.int64)
        out = model["embed"].run({"text_ids": special, "codec_ids": inputs["codec_ids"][:1]})
        bos, eos, pad = out["text_embeds"][0]
        out = model["embed"].run({"text_ids": inputs["text_ids"], "codec_ids": inputs["codec_ids"]})
        prompts, streamed = [], []
        for text, n, codec, c in zip(
            out["text_embeds"],
            inputs["text_lengths"],
            out["codec_embeds"],
            inputs["codec_lengths"],
            strict=True,
        ):
            codec = codec[:c]
            controls = np.concatenate([np.repeat(pad[None], c - 2, 0), bos[None]]) + codec[:-1]
            first = text[ROLE] + codec[-1]
            prompts.append(np.concatenate([text[:ROLE], controls, first[None]]))
            streamed.append(np.concatenate([text[ROLE + 1 : n - TAIL], eos[None]]))
        seq, width = max(map(len, prompts)), max(map(len, streamed))
        embeds = np.zeros((len(prompts), seq, self.s.hidden), np.float32)
        mask = np.zeros((len(prompts), seq), np.int64)
        text = np.repeat(pad[None, None], len(prompts), 0).repeat(width, 1)
        for i, (prompt, rest) in enumerate(zip(prompts, streamed, strict=True)):
            embeds[i, seq - len(prompt) :], mask[i, seq - len(prompt) :] = prompt, 1
            text[i, : len(rest)] = rest
        return embeds, mask, text, pad

    def generate(
        self,
        model: Model,
        inputs: Feeds,
        generation: FrameGeneration,
        forced: np.ndarray | None = None,
    ) -> Feeds:
        """Frames of the prompt `inputs`: int64 `codes` [batch, groups, n] (the stop code's frames
        after an item's stop), `code_lengths` [batch] (frames before the stop), `logits`
        [batch, n + 1, vocab] and `predictor_logits` [batch, n, groups - 1, codebook size].
        With `forced` [batch, groups, n], those codes are fed (teacher forcing)."""
        run = Frames()
        for _ in self.frames(model, inputs, generation, run, forced):
            pass
        return self._outputs(run)

    def frames(
        self,
        model: Model,
        inputs: Feeds,
        generation: FrameGeneration,
        run: Frames,
        forced: np.ndarray | None = None,
    ) -> Iterator[np.ndarray]:
        """Each frame's codes [batch, groups] as soon as they are chosen, kept in `run` with
        the distributions they were chosen from."""
        embeds, mask, text, pad = self.embeddings(model, inputs)
        out = model["prefill"].run({"embeds": embeds, "attention_mask": mask})
        presents = {n: v for n, v in out.items() if n.startswith("present_")}
        logits, hidden = out["logits"], out["hidden"]
        cache = Cache.of(out["cache_mask"], presents, GROW)
        real = mask.sum(axis=1, keepdims=True)
        rng = np.random.default_rng(generation.sampling.seed)
        run.stopped = np.zeros(len(embeds), bool)
        limit = generation.max_frames if forced is None else forced.shape[2]
        while True:
            step = len(run.codes)
            run.logits.append(logits.astype(np.float32))
            if forced is not None and step < limit:
                first = forced[:, 0, step]
            else:
                first = self._first_code(logits, run, generation, rng)
            run.stopped |= first == self.s.codes["eos"]
            if step >= limit or (generation.stop and forced is None and run.stopped.all()):
                return
            teacher = None if forced is None else forced[:, :, step]
            frame = self.predict(model, hidden, first, generation.predictor, rng, run, teacher)
            run.codes.append(frame)
            yield frame
            streamed = text[:, step] if step < text.shape[1] else np.repeat(pad[None], len(text), 0)
            logits, hidden = self.step(model, cache, frame, streamed, real + step)

    def handoff_pieces(self, model: Model, inputs: Feeds) -> Iterator[np.ndarray]:
        """One item's frames [groups, 1] as the talker makes them (as `run`), until its stop."""
        for frame in self.frames(model, inputs, self.generation_for(inputs), Frames()):
            yield frame[0][:, None]

    def _first_code(
        self, logits: np.ndarray, run: Frames, generation: FrameGeneration, rng: np.random.Generator
    ) -> np.ndarray:
        """The talker's choice: control codes suppressed but the stop, which waits for the
        third step; the repetition penalty over the first codes chosen so far."""
        logits = logits.astype(np.float64)
        eos = self.s.codes["eos"]
        logits[:, self.s.vocab - SPECIAL_CODES :] = np.where(
            np.arange(self.s.vocab - SPECIAL_CODES, self.s.vocab) == eos,
            logits[:, eos : eos + 1],
            -np.inf,
        )
        if len(run.logits) <= MIN_FRAMES or not generation.stop:
            logits[:, eos] = -np.inf
        history = (
            np.stack([c[:, 0] for c in run.codes], 1)
            if run.codes
            else np.zeros((len(logits), 0), np.int64)
        )
        code = pick(logits, history, generation.sampling, rng)
        assert run.stopped is not None
        return np.where(run.stopped & generation.stop, eos, code)

    def predict(
        self,
        model: Model,
        hidden: np.ndarray,
        first: np.ndarray,
        sampling: Sampling,
        rng: np.random.Generator,
        run: Frames,
        forced: np.ndarray | None,
    ) -> np.ndarray:
        """The frame's codes [batch, groups]: `first`, then the code predictor's, chosen inside
        its graph (greedy, or sampled from uniform draws made here) or fed (`forced`)."""
        shape = (len(first), self.s.groups - 1)
        out = model["predictor"].run(
            {
                "hidden": hidden,
                "code": first[:, None],
                "forced": np.full(shape, -1, np.int64) if forced is None else forced[:, 1:],
                "noise": rng.random(shape, np.float32),
                "temperature": np.array([sampling.temperature], np.float32),
                "top_k": np.array([sampling.top_k], np.int64),
                "top_p": np.array([sampling.top_p], np.float32),
            }
        )
        run.predictor_logits.append(out["logits"].astype(np.float32))
        return np.concatenate([first[:, None], out["codes"]], 1).astype(np.int64)

    def step(
        self, model: Model, cache: Cache, frame: np.ndarray, text: np.ndarray, position: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Feed a frame to the decode graph and write its keys and values into the next free
        slot; the next logits and hidden state."""
        text, position = text.astype(np.float32), position.astype(np.int64)
        out = cache.feed(model["decode"], {"codes": frame, "text": text, "position": position})
        return out["logits"], out["hidden"]

    def _outputs(self, run: Frames) -> Feeds:
        batch = len(run.logits[0])
        codes = (
            np.stack(run.codes, 2) if run.codes else np.zeros((batch, self.s.groups, 0), np.int64)
        )
        is_stop = codes[:, 0] == self.s.codes["eos"]
        lengths = np.where(is_stop.any(axis=1), is_stop.argmax(axis=1), codes.shape[2])
        predictor = (
            np.stack(run.predictor_logits, 1)
            if run.predictor_logits
            else np.zeros((batch, 0, self.s.groups - 1, self.s.codebook_size), np.float32)
        )
        return {
            "codes": codes,
            "code_lengths": lengths.astype(np.int64),
            "logits": np.stack(run.logits, 1),
            "predictor_logits": predictor,
        }

    # Outputs and quality.
    def seconds(self, outputs: Feeds) -> float:
        return max(int(outputs["code_lengths"].sum()), 1) / self.s.frames_per_second

    def code_space(self) -> CodeSpace:
        return CodeSpace(self.s.groups, self.s.codebook_size, self.s.frames_per_second)

    def handoff(self, outputs: Feeds) -> list[np.ndarray]:
        """Each item's frames before its stop, [groups, n] (what the codec's decoder takes)."""
        return [c[:, :n] for c, n in zip(outputs["codes"], outputs["code_lengths"], strict=True)]

    def compare(
        self,
        reference: Feeds,
        test: Feeds,
        metrics: Sequence[str],
        failures: list[str] | None = None,
    ) -> Figures:
        """`agreement`: the share of the reference's codes (every codebook) the test chose too;
        `divergence`: the first frame where any code differs; `stop_diff`: the largest
        difference of the stop frames; `kl`: the mean KL divergence of the next-code
        distributions (talker and predictor) over the frames before the first difference."""
        ref, tst = reference["codes"], test["codes"]
        frames = min(ref.shape[2], tst.shape[2])
        same = ref[:, :, :frames] == tst[:, :, :frames]
        differ = ~same.all(axis=(0, 1))
        first = int(differ.argmax()) if differ.any() else frames
        figures = {
            "agreement": float(same.sum() / ref.size) if ref.size else 1.0,
            "divergence": float(first),
            "stop_diff": float(np.abs(reference["code_lengths"] - test["code_lengths"]).max()),
            "kl": _kl(reference, test, first),
        }
        return {name: figures[name] for name in metrics}

    def evaluate(
        self, expected: Feeds, candidate: Model, inputs: Feeds, metrics: Sequence[str]
    ) -> Figures:
        """`compare` of a free run, with `kl` under teacher forcing (the candidate fed the
        reference's codes at every frame)."""
        figures = self.compare(expected, self.run(candidate, inputs), metrics)
        if "kl" in metrics:
            forced = self.generate(candidate, inputs, self.generation, forced=expected["codes"])
            figures["kl"] = _kl(expected, forced, expected["codes"].shape[2])
        return figures

    # Speed.
    def measure(self, model: Model, inputs: Feeds) -> dict[str, float]:
        """Prefill latency, frames per second over a whole generation, and the time of one
        frame's parts (talker step, the code predictor's steps) at cache lengths CONTEXTS."""
        start = time.perf_counter()
        outputs = self.run(model, inputs)
        total = time.perf_counter() - start
        frames = int(outputs["codes"].shape[2])
        figures = {"frames_per_s": frames / total if frames else math.nan}
        hidden = np.zeros((1, self.s.hidden), np.float32)
        rng = np.random.default_rng(0)
        start = time.perf_counter()
        self.predict(model, hidden, np.zeros(1, np.int64), Sampling(), rng, Frames(), None)
        figures["predictor_ms_per_frame"] = 1000 * (time.perf_counter() - start)
        limit = self.spec.dims["slots"].max
        for length in (c for c in CONTEXTS if c <= limit):
            figures[f"talker_step_ms_at_{length}"] = 1000 * self.step_seconds(model, length)
        return figures

    def step_seconds(self, model: Model, length: int, repeats: int = 5) -> float:
        """Median seconds of one talker step over a random cache of `length` used slots."""
        frame = np.zeros((1, self.s.groups), np.int64)
        text = np.zeros((1, self.s.hidden), np.float32)
        position = np.full((1, 1), length)
        step = lambda cache: self.step(model, cache, frame, text, position)  # noqa: E731
        shape = (self.s.layers, self.s.kv_heads, self.s.head_dim)
        return timed_step(step, shape, length, repeats)


def _padded(name: str, rows: Sequence[np.ndarray]) -> Feeds:
    """`{name}_ids` [batch, longest] (right padding with 0) and `{name}_lengths` [batch]."""
    ids = np.zeros((len(rows), max(r.size for r in rows)), np.int64)
    for i, row in enumerate(rows):
        ids[i, : row.size] = row
    return {f"{name}_ids": ids, f"{name}_lengths": np.array([r.size for r in rows], np.int64)}


def _kl(reference: Feeds, test: Feeds, frames: int) -> float:
    """Mean KL divergence of the talker's and the predictor's distributions over `frames`."""
    talker = kl_divergence(reference["logits"][:, : frames + 1], test["logits"][:, : frames + 1])
    predictor = kl_divergence(
        reference["predictor_logits"][:, :frames], test["predictor_logits"][:, :frames]
    )
    return float(np.concatenate([talker.ravel(), predictor.ravel()]).mean())
