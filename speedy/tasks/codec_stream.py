"""Streaming a codec through its step graph: codes in, audio out, chunk by chunk, with the whole
history in explicit state tensors (conv left contexts, transposed-conv overlaps, the attention
K/V ring and which of its slots hold a token) that go out of one call and into the next.

    streamer = task.streamer(0.08)                      # 80 ms: one frame per call
    state = streamer.start(model)                       # zeros: the start of a stream
    audio, state = streamer.step(model, codes, state)   # any number of frames, state carried
    for piece in streamer.stream(model, {"codes": codes}):  # or {"audio": ...}, or pieces
        play(piece)

A `CodecState` names the model that made it (a digest of its family, network and weights), so
that feeding it to another model is a clear error rather than noise; the tensors are checked
against the step graph's inputs too. The stream equals the whole-signal decode up to float
rounding, whatever the chunk sizes.
"""

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from speedy.errors import SpeedyError
from speedy.model_spec import ModelSpec
from speedy.runtime import Model, Session
from speedy.specs import Feeds
from speedy.tasks.capabilities import Streamer
from speedy.tasks.codec_settings import AUDIO, CODES, CodecSettings, check_codes


class StreamedCodec(Protocol):
    """What a stream needs of its codec task (`speedy.tasks.codec.Codec`)."""

    spec: ModelSpec

    @property
    def codec(self) -> CodecSettings: ...

    @property
    def hop(self) -> int: ...

    def encode(self, model: Model, audio: np.ndarray) -> np.ndarray: ...


def model_identity(spec: ModelSpec) -> str:
    """What a state belongs to: a digest of the family, network, audio and weights (the same for
    every stage's artifact of one model: exported, simplified or quantized)."""
    keys = {"family", "network", "audio", "factory", "checkpoint"}
    payload = spec.model_dump_json(include=keys)
    return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CodecState:
    """The state of a stream after `frames` frames: the step graph's state inputs by name."""

    model: str  # `model_identity` of the model that made it
    frames: int
    tensors: dict[str, np.ndarray] = field(repr=False)

    @property
    def batch(self) -> int:
        return next(iter(self.tensors.values())).shape[0]

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())


class CodecStreamer(Streamer):
    """Decodes `chunk` frames per step-graph call."""

    def __init__(self, task: StreamedCodec, chunk: int) -> None:
        if task.codec.step_graph is None:
            raise SpeedyError(
                f"the {task.spec.family} codec has no step graph", "decode whole signals instead"
            )
        limits = task.spec.dims.get("chunk")
        if chunk < 1 or (limits is not None and chunk not in limits):
            allowed = f"{limits.min}..{limits.max}" if limits else "1 or more"
            raise SpeedyError(
                f"a stream chunk of {chunk} frames is outside the step graph's range ({allowed})",
                "pick a chunk length within it (at 12.5 Hz, 80 ms is one frame)",
            )
        self.task, self.chunk = task, chunk
        self.graph_name = task.codec.step_graph
        self.identity = model_identity(task.spec)
        self.outputs = {s.input: s.output for s in task.codec.state}

    # One call.
    def session(self, model: Model) -> Session:
        if self.graph_name not in model.graphs:
            raise SpeedyError(
                f"artifact {model.path} has no '{self.graph_name}' graph to stream with",
                "export all the family's graphs (no --graph filter), or decode whole signals",
            )
        return model[self.graph_name]

    def _state_inputs(self, session: Session) -> list:
        return [spec for spec in session.inputs if spec.name in self.outputs]

    def start(self, model: Model, batch: int = 1) -> CodecState:
        """The state before the first frame: zeros of the step graph's state shapes."""
        tensors = {
            spec.name: np.zeros(spec.resolve({"batch": batch}), np.dtype(spec.dtype))
            for spec in self._state_inputs(self.session(model))
        }
        return CodecState(self.identity, 0, tensors)

    def check_state(self, model: Model, state: "CodecState | Mapping[str, np.ndarray]", batch: int):
        """The state's tensors, after checking they come from this model and fit its graph."""
        if isinstance(state, CodecState):
            if state.model != self.identity:
                raise SpeedyError(
                    f"the stream state was made by another model ({state.model}); this is "
                    f"{self.task.spec.recipe} ({self.identity})",
                    "start a new stream with streamer.start(model) for this model",
                )
            tensors = state.tensors
        else:
            tensors = dict(state)
        fix = "pass the state this model's previous step returned (or streamer.start(model))"
        specs = self._state_inputs(self.session(model))
        if missing := [s.name for s in specs if s.name not in tensors]:
            raise SpeedyError(
                f"the stream state lacks {len(missing)} of this model's {len(specs)} state "
                f"tensors (first: {missing[0]}): a state from another model",
                fix,
            )
        if extra := sorted(tensors.keys() - {s.name for s in specs}):
            raise SpeedyError(f"the stream state has unknown tensors ({extra[0]}, ...)", fix)
        for spec in specs:
            expected, found = spec.resolve({"batch": batch}), tensors[spec.name].shape
            if tuple(found) != expected:
                raise SpeedyError(
                    f"state tensor {spec.name} is {tuple(found)}, this model's "
                    f"{self.graph_name} takes {expected}: a state from another model or batch",
                    fix,
                )
        return tensors

    def step(
        self, model: Model, codes: np.ndarray, state: "CodecState | Mapping[str, np.ndarray]"
    ) -> tuple[np.ndarray, CodecState]:
        """Audio (batch, 1, frames * samples_per_frame) of the next `codes` (batch, codebooks,
        frames) after `state`, and the state after them (one step-graph call)."""
        check_codes(codes, self.task.codec)
        tensors = self.check_state(model, state, codes.shape[0])
        session = self.session(model)
        outputs = session.run({CODES: np.asarray(codes, np.int64), **tensors})
        new = {name: outputs[out] for name, out in self.outputs.items() if name in tensors}
        frames = state.frames if isinstance(state, CodecState) else 0
        return outputs[AUDIO], CodecState(self.identity, frames + codes.shape[-1], new)

    # Many calls.
    def chunks(
        self, model: Model, codes: np.ndarray, state: CodecState | None = None
    ) -> Iterator[np.ndarray]:
        """Audio of `codes`, `chunk` frames per call, continuing `state` (default: a new
        stream); each chunk's (batch, 1, samples) as soon as it is decoded."""
        for audio, _ in self.steps(model, codes, state):
            yield audio

    def steps(
        self, model: Model, codes: np.ndarray, state: CodecState | None = None
    ) -> Iterator[tuple[np.ndarray, CodecState]]:
        """(audio, state after it) per chunk of `codes`."""
        state = state or self.start(model, codes.shape[0])
        for start in range(0, codes.shape[-1], self.chunk):
            audio, state = self.step(model, codes[..., start : start + self.chunk], state)
            yield audio, state

    def stream(self, model: Model, inputs: Feeds | Iterable[Feeds]) -> Iterator[np.ndarray]:
        """The waveform (one item) of one run's inputs, or of consecutive pieces of them, chunk
        by chunk: codes are decoded as they come; audio is encoded first (a piece after the
        first with `encoder_context` frames of the audio before it, so the codes are those of
        the whole signal)."""
        pieces = [inputs] if isinstance(inputs, Mapping) else inputs
        state: CodecState | None = None
        pending = np.zeros((1, self.task.codec.codebooks, 0), np.int64)
        for codes in self._codes(model, pieces):
            if codes.shape[0] != 1:
                raise SpeedyError(
                    f"a stream carries one item, got a batch of {codes.shape[0]}",
                    "stream items one at a time, or decode the batch with streamer.chunks",
                )
            pending = np.concatenate([pending, codes], axis=-1)
            ready = pending.shape[-1] // self.chunk * self.chunk
            for audio, after in self.steps(model, pending[..., :ready], state):
                state = after
                yield audio.reshape(-1)
            pending = pending[..., ready:]
        if pending.shape[-1]:
            for audio, _ in self.steps(model, pending, state):
                yield audio.reshape(-1)

    def _codes(self, model: Model, pieces: Iterable[Feeds]) -> Iterator[np.ndarray]:
        """The codes of each piece (its own, or its audio's, encoded with left context)."""
        hop, context = self.task.hop, self.task.codec.encoder_context
        history = leftover = None  # audio before the piece (whole frames); samples short of one
        for piece in pieces:
            if AUDIO not in piece:
                yield piece[CODES]
                continue
            audio = piece[AUDIO]
            if leftover is not None:
                audio = np.concatenate([leftover, audio], axis=-1)
            whole = audio.shape[-1] // hop * hop
            audio, leftover = audio[..., :whole], audio[..., whole:]
            if not whole:
                continue
            if history is None:
                yield self.task.encode(model, audio)
            elif context is None:
                raise SpeedyError(
                    "audio arriving in pieces needs the encoder's left context, which the "
                    f"{self.task.spec.family} family does not state",
                    "pass the whole audio in one piece",
                )
            else:
                window = np.concatenate([history, audio], axis=-1)
                yield self.task.encode(model, window)[..., history.shape[-1] // hop :]
            joined = audio if history is None else np.concatenate([history, audio], axis=-1)
            history = joined[..., max(0, joined.shape[-1] - (context or 0) * hop) :]

    def describe(self) -> dict[str, int]:
        """Chunk frames and state tensors; no context frames re-run (the state carries the
        history) and none awaited (the decoder is causal)."""
        return {"chunk": self.chunk, "left": 0, "right": 0, "state_tensors": len(self.outputs)}
