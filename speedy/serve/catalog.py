"""What a server speaks through: its artifacts loaded once, by name, as voices (a text model
chained with a vocoder of its mels, or a text-to-wave voice alone) and uploads' models (a
vocoder: audio or a mel in, audio out).

Names are `NAME=PATH` or the artifact's recipe and stage (`hifigan_v1/quantize`); a voice is
named `ACOUSTIC+VOCODER`, or after its one model. Requests name these, never a path on the server.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speedy import runtime
from speedy.audio.cache import FeatureCache, default_cache_dir
from speedy.chain import Chain
from speedy.errors import SpeedyError
from speedy.runtime import Model
from speedy.tasks import Streamer, Task, chains, makes_audio, streamer_of, task_for
from speedy.tasks.capabilities import TakesRequests, TakesUploads


@dataclass
class Served:
    """One loaded artifact and its task."""

    name: str
    model: Model
    task: Task
    streamer: Streamer | None = None

    @property
    def upload_task(self) -> TakesUploads:
        """Its task, which reads uploads (the catalog takes uploads only for such models)."""
        assert isinstance(self.task, TakesUploads)
        return self.task

    def vocode(self, example: Any) -> np.ndarray | None:
        """The audio this model makes of an upload's example (None: it makes no audio)."""
        outputs = self.task.run(self.model, self.task.inputs(example))
        (audio, *_) = self.task.waveforms(outputs) or [None]
        return audio

    def describe(self) -> dict[str, Any]:
        """What `/v1/models` says of it: task, family, precision, size and quality report."""
        manifest = self.model.manifest
        return {
            "name": self.name,
            "task": self.task.name,
            "family": manifest.model.family,
            "recipe": manifest.model.recipe,
            "stage": manifest.lineage.stage,
            "precision": manifest.precision,
            "size_mb": round(self.model.artifact.size_bytes / 1e6, 2),
            "sample_rate": manifest.model.audio.sample_rate,
            "graphs": list(manifest.graphs),
            "quality": _quality(manifest.reports),
        }


def _quality(reports: dict[str, Any]) -> dict[str, Any]:
    """The headline of an artifact's checks: parity with its parent, quality against it."""
    found: dict[str, Any] = {}
    if parity := reports.get("parity"):
        found["parity"] = {k: parity[k] for k in ("passed", "atol") if k in parity}
    if quality := reports.get("quality"):
        found |= {k: quality[k] for k in ("against", "metrics", "verdict") if k in quality}
    return found


@dataclass
class Voice:
    """A text model and the vocoder that turns what it makes into audio (none: it makes the
    audio itself)."""

    name: str
    acoustic: Served
    vocoder: Served | None = None
    chain: Chain = field(init=False)

    def __post_init__(self) -> None:
        self.chain = Chain(self.acoustic.model, self.vocoder and self.vocoder.model)

    @property
    def streamer(self) -> Streamer | None:
        """The vocoder's streaming (a voice without a vocoder has none)."""
        return self.vocoder and self.vocoder.streamer

    @property
    def task(self) -> TakesRequests:
        """The text model's task: what a request may hold (`Request`) and choose from."""
        assert isinstance(self.acoustic.task, TakesRequests)  # only such models become voices
        return self.acoustic.task

    def stream(self, controls: dict[str, Any]) -> Iterator[np.ndarray]:
        """The audio of a request, chunk by chunk as the vocoder streams what the text model
        hands on (a codes model: each frame as soon as it is made)."""
        assert self.streamer is not None and self.vocoder is not None
        pieces = self.chain.handed_pieces(self.chain.request(**controls))
        return self.streamer.stream(
            self.vocoder.model, (self.vocoder.task.chained_inputs(p) for p in pieces)
        )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "acoustic": self.acoustic.name,
            "vocoder": self.vocoder and self.vocoder.name,
            "sample_rate": self.chain.sample_rate,
            "controls": self.task.Request.model_json_schema(),
            "choices": self.task.choices(),
            "streams": self.streamer is not None,
        }


def named(item: str) -> tuple[str, Path]:
    """`NAME=PATH`, or a path named after its recipe and stage directories."""
    label, sep, rest = item.partition("=")
    if sep and label and not Path(item).exists():
        return label, Path(rest)
    path = Path(item).resolve()
    return f"{path.parent.name}/{path.name}", Path(item)


class Catalog:
    """The served artifacts: voices by name, and the models that take uploads by name."""

    def __init__(self, models: Sequence[Served], vocoders: Sequence[Served]) -> None:
        self.models = {m.name: m for m in models}
        self.uploads = {m.name: m for m in models if isinstance(m.task, TakesUploads)}
        text_models = [m for m in models if isinstance(m.task, TakesRequests)]
        self.voices = {
            f"{a.name}+{v.name}": Voice(f"{a.name}+{v.name}", a, v)
            for a in text_models
            for v in vocoders
            if chains(a.task, v.task)
        }
        self.voices |= {a.name: Voice(a.name, a) for a in text_models if makes_audio(a.task)}
        for model in models:
            decoded = any(v.acoustic is model for v in self.voices.values())
            if model.task.produces == "codes" and not decoded:
                offered = [f"; {m.name} decodes {c}" for m in models if m is not model
                           if (c := m.task.code_space())]  # fmt: skip
                raise SpeedyError(
                    f"{model.name} makes speech codes ({model.task.code_space()}) and no served "
                    f"codec decodes them{''.join(offered)}",
                    "serve it with the codec of its code space (--vocoder ARTIFACT)",
                )
        for model in text_models:
            if not any(v.acoustic is model for v in self.voices.values()):
                raise SpeedyError(
                    f"{model.name} makes {model.task.produces} and no served vocoder takes it",
                    "pass a vocoder of its mels (--vocoder ARTIFACT) or among the artifacts",
                )
        if not self.voices and not self.uploads:
            raise SpeedyError(
                "none of the artifacts takes text or uploads",
                "serve a text-to-mel model with a vocoder, a text-to-wave voice, or a vocoder",
            )

    @classmethod
    def load(
        cls,
        artifacts: Sequence[str],
        vocoders: Sequence[str],
        chunk_seconds: float,
        open_model: Callable[[Path], Model] = runtime.load,
    ) -> "Catalog":
        """Open every artifact once with `open_model` (in this process by default; elsewhere,
        see `speedy.deploy.remote`); voices chain the text models with `vocoders` (default: the
        vocoders among `artifacts`)."""
        loaded: dict[str, Served] = {}
        names: dict[str, str] = {}  # item -> its name
        for item in [*artifacts, *vocoders]:
            name, path = named(item)
            names[item] = name
            if name in loaded:
                if loaded[name].model.path.resolve() == path.resolve():
                    continue
                raise SpeedyError(
                    f"two artifacts are named '{name}' ({loaded[name].model.path} and {path})",
                    "label them as NAME=PATH",
                )
            model = open_model(path)
            task = task_for(model.manifest.model)
            loaded[name] = Served(name, model, task, streamer_of(task, chunk_seconds))
        served = [loaded[names[a]] for a in artifacts]
        chosen = [loaded[names[v]] for v in vocoders] or [m for m in served if makes_audio(m.task)]
        return cls(served, chosen)

    def warm_up(self) -> None:
        """One run of each voice and upload model on its task's first default example, so the
        first request pays no lazy loading (text front end, memory arenas)."""
        cache = FeatureCache(default_cache_dir())
        examples: dict[str, Any] = {}  # a model's first default example, read once

        def inputs(served: Served) -> Any:
            task = served.task
            if served.name not in examples:
                examples[served.name] = task.read_data(task.default_data, cache)[0]
            return task.inputs(examples[served.name])

        for voice in self.voices.values():
            voice.chain.speak(inputs(voice.acoustic))
        for served in self.uploads.values():
            served.task.run(served.model, inputs(served))

    def voice(self, name: str | None) -> Voice:
        """The voice called `name` (default: the first)."""
        return _pick(self.voices, name, "voice", "text models (with a vocoder if they need one)")

    def upload_model(self, name: str | None) -> Served:
        """The model taking uploads called `name` (default: the first)."""
        return _pick(self.uploads, name, "model", "a vocoder to serve")

    def describe(self) -> dict[str, Any]:
        return {
            "models": [m.describe() for m in self.models.values()],
            "voices": [v.describe() for v in self.voices.values()],
            "uploads": {name: m.upload_task.upload_kind for name, m in self.uploads.items()},
        }


class Unknown(SpeedyError):
    """A request named a voice or model this server does not serve."""


def _pick(found: dict[str, Any], name: str | None, kind: str, missing: str) -> Any:
    if not found:
        raise Unknown(f"this server has no {kind} for this request", f"serve {missing}")
    if name is None:
        return next(iter(found.values()))
    if name not in found:
        raise Unknown(f"unknown {kind} '{name}'", f"use one of: {', '.join(found)}")
    return found[name]
