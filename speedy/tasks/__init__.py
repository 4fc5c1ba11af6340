"""Tasks: what a model is for, one module each, found by name in this registry."""

from speedy.errors import SpeedyError
from speedy.model_spec import ModelSpec
from speedy.tasks.base import (
    Figures,
    Imported,
    Streamer,
    Task,
    chains,
    graph_feeds,
    makes_audio,
)
from speedy.tasks.codec import Codec
from speedy.tasks.generic import Generic
from speedy.tasks.speech_codes import SpeechCodes
from speedy.tasks.text_to_mel import TextToMel
from speedy.tasks.text_to_wave import TextToWave
from speedy.tasks.vocoder import Vocoder

__all__ = [
    "TASKS",
    "Figures",
    "Imported",
    "Streamer",
    "Task",
    "chains",
    "graph_feeds",
    "makes_audio",
    "task_for",
]

TASKS: dict[str, type[Task]] = {
    t.name: t for t in (Vocoder, TextToMel, Codec, SpeechCodes, Generic, TextToWave)
}


def register(task: type[Task]) -> None:
    """Add a task to the registry (a plugin's, or a test's)."""
    TASKS[task.name] = task


def task_class(name: str) -> type[Task]:
    """The task class registered under `name`."""
    try:
        return TASKS[name]
    except KeyError:
        raise SpeedyError(
            f"unknown task '{name}'", f"use one of: {', '.join(sorted(TASKS))}"
        ) from None


def task_for(spec: ModelSpec) -> Task:
    """The task of a model, configured with its spec."""
    return task_class(spec.task)(spec)
