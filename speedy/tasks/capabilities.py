"""What a task may do beyond its core (data, runs, outputs, quality): stream its audio, run a
user's controls, answer requests served over HTTP, read uploaded files. A task has a capability
by deriving from its class, and callers ask with `isinstance` (`streamer_of` for streaming, which
a task may have for some of its models only)."""

import io
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Annotated, Any, ClassVar

import numpy as np
import soundfile as sf
from pydantic import BaseModel, Field

from speedy.errors import OutOfRange
from speedy.runtime import Model
from speedy.specs import Feeds
from speedy.tasks.base import Task

# The reach of a request's controls. Past it a request costs unbounded time and memory (a speed of
# 0.005 made 128 s of audio of one sentence) or breaks the model's arithmetic.
Speed = Annotated[float, Field(ge=0.25, le=4.0)]  # OpenAI's speech API takes the same range
PitchShift = Annotated[float, Field(ge=-12.0, le=12.0)]  # semitones: an octave either way
NoiseScale = Annotated[float, Field(ge=0.0, le=2.0)]  # a VITS voice's default is below 1


class Streamer(ABC):
    """A task's streaming: the audio of one run's inputs, chunk by chunk."""

    chunk: int  # input frames per chunk

    @abstractmethod
    def stream(self, model: Model, inputs: Feeds) -> Iterator[np.ndarray]:
        """The waveform of `inputs`, chunk by chunk."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Chunk and context sizes, for reports."""


class Streams(Task):
    """A task whose audio streams, chunk by chunk."""

    @property
    def streams(self) -> bool:
        """Whether this model streams (True unless the task streams only some of its models)."""
        return True

    @abstractmethod
    def streamer(self, chunk_seconds: float) -> Streamer:
        """Streaming in chunks of about `chunk_seconds`."""


def streamer_of(task: Task, chunk_seconds: float) -> Streamer | None:
    """The task's streaming in chunks of about `chunk_seconds`, or None where its model has none."""
    return task.streamer(chunk_seconds) if isinstance(task, Streams) and task.streams else None


class TakesControls(Task):
    """A task a user runs with controls (text, speaker...) from Python or the command line."""

    Controls: ClassVar[type[BaseModel]]

    @abstractmethod
    def request(self, controls: BaseModel) -> Feeds:
        """The inputs of one run for a user's controls (`Controls`)."""

    def choices(self) -> dict[str, list[Any]]:
        """The values each control with a closed set of them may take (speakers, emotions)."""
        return {}


class TakesRequests(TakesControls):
    """A task a server speaks through: requests over HTTP hold `Request`, a subset of the
    controls (no files of the server's)."""

    Request: ClassVar[type[BaseModel]]


class TakesUploads(Task):
    """A task that a server runs on uploaded files."""

    upload_kind: ClassVar[str]  # what an upload may be, in words
    frame_unit: ClassVar[str]  # what its `frames` dim counts, in words

    @abstractmethod
    def read_upload(self, data: bytes) -> Any:
        """An example from the bytes of an uploaded file (`upload_kind`)."""

    def check_duration(self, upload: io.BytesIO) -> None:
        """Refuse uploaded audio longer than the model takes (its `frames` of `hop_length`
        samples), read from the file's header before decoding it (a small FLAC can hold hours
        of silence)."""
        try:
            info = sf.info(upload)
        except Exception:  # soundfile raises several types; reading it says what is wrong
            return
        seconds = info.frames / info.samplerate
        most = self.spec.dims["frames"].max
        if seconds * self.audio.sample_rate / self.audio.hop_length > most:
            longest = most * self.audio.hop_length / self.audio.sample_rate
            raise OutOfRange(
                f"the upload holds {seconds:.1f} s of audio; this model takes at most "
                f"{longest:.1f} s ({most} {self.frame_unit})",
                "send shorter audio, or widen dims.frames and rebuild",
            )
