"""The messages between a bench run and its workers, one JSON object a line, validated both ways.

The parent sends a `Request`; the worker answers with the request's `reply` model, or with a
`Failure`. Every answer carries `ok`, which tells the two apart. A worker announces itself with
`Ready` once its imports are done, and stops at the end of its input."""

from typing import Annotated, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class Message(BaseModel):
    # floats cross as JSON's NaN and Infinity, as `json.dumps` writes them
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="constants")


class Reply(Message):
    ok: Literal[True] = True


class Failure(Message):
    """A command that failed, with what to do about it."""

    ok: Literal[False] = False
    problem: str
    fix: str


class Ready(Reply):
    """The worker has started and waits for commands."""


class Loaded(Reply):
    """Seconds to open the artifact and for its first (cold) run; resident bytes around it."""

    load_seconds: float
    first_run_seconds: float
    rss_before_load: int
    rss_after_load: int


class Timings(Reply):
    """Seconds per utterance; chained with a vocoder, those of each stage too."""

    seconds: list[float]
    stages: dict[str, list[float]] = {}  # empty: not chained


class BatchTiming(Reply):
    """Seconds for one batched run, and the seconds of audio it made."""

    seconds: float
    audio_seconds: float


class TaskFigures(Reply):
    figures: dict[str, float]


class SavedOutputs(Reply):
    """Seam SNR per utterance and seconds of the streamed pass (empty and None: no streaming)."""

    seam_snr_db: list[float]
    stream_seconds: float | None


class MemoryPeaks(Reply):
    rss_peak: int
    gpu_peak: int | None  # None: not on CUDA, or CUDA never initialised


R = TypeVar("R", bound=Reply)


class Request(Message, Generic[R]):
    """A command to a worker, answered by an `R` (its `reply`)."""

    reply: ClassVar[type[Reply]]


class Load(Request[Loaded]):
    op: Literal["load"] = "load"
    reply = Loaded


class Whole(Request[Timings]):
    op: Literal["whole"] = "whole"
    reply = Timings


class Batch(Request[BatchTiming]):
    op: Literal["batch"] = "batch"
    reply = BatchTiming
    size: int


class FirstChunk(Request[Timings]):
    op: Literal["first_chunk"] = "first_chunk"
    reply = Timings


class MeasureTask(Request[TaskFigures]):
    op: Literal["task_figures"] = "task_figures"
    reply = TaskFigures


class SaveOutputs(Request[SavedOutputs]):
    op: Literal["outputs"] = "outputs"
    reply = SavedOutputs
    directory: str


class ReadMemory(Request[MemoryPeaks]):
    op: Literal["memory"] = "memory"
    reply = MemoryPeaks


AnyRequest = Annotated[
    Load | Whole | Batch | FirstChunk | MeasureTask | SaveOutputs | ReadMemory,
    Field(discriminator="op"),
]
REQUESTS: TypeAdapter[AnyRequest] = TypeAdapter(AnyRequest)
