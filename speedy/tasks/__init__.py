"""Tasks: what a model is for, one module each, found by name in this registry (imported only
when a model of that task is used)."""

from speedy.model_spec import ModelSpec
from speedy.registry import Registry
from speedy.tasks.base import Figures, Imported, Task, chains, graph_feeds, makes_audio
from speedy.tasks.capabilities import Streamer, streamer_of

__all__ = [
    "TASKS",
    "Figures",
    "Imported",
    "Streamer",
    "Task",
    "chains",
    "graph_feeds",
    "makes_audio",
    "streamer_of",
    "task_class",
    "task_for",
]

TASKS: Registry[type[Task]] = Registry(
    "task",
    "speedy.tasks",
    {
        "vocoder": "speedy.tasks.vocoder:Vocoder",
        "text_to_mel": "speedy.tasks.text_to_mel:TextToMel",
        "codec": "speedy.tasks.codec:Codec",
        "speech_codes": "speedy.tasks.speech_codes:SpeechCodes",
        "frame_codes": "speedy.tasks.frame_codes:FrameCodes",
        "generic": "speedy.tasks.generic:Generic",
        "text_to_wave": "speedy.tasks.text_to_wave:TextToWave",
    },
)


def task_class(name: str) -> type[Task]:
    """The task class registered under `name`."""
    return TASKS.get(name)


def task_for(spec: ModelSpec) -> Task:
    """The task of a model, configured with its spec."""
    return task_class(spec.task)(spec)
