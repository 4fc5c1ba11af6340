"""One artifact measured in its own process, so its load time and peak memory are its own.

    python -I -m speedy.bench.worker ARTIFACT --device cpu --threads 2 --inputs INPUTS.npz \
        [--vocoder VOCODER] [--chunk-seconds 0.25]

INPUTS.npz holds the inputs the parent made once for all workers: `utterance/<i>/<name>` (whole
utterances) and `batch/<n>/<name>` (batched runs). The parent (`speedy.bench.pool`) sends one
request per line on stdin and reads one reply per line on stdout (`speedy.bench.protocol`);
anything the libraries print goes to stderr. Timings cover the task's run of the model (or the
stream) only. With a vocoder, whole utterances run through both models
(`speedy.chain.Chain.speak`), each timed, and the vocoder's outputs are saved beside the
artifact's.
"""

import argparse
import os
import sys
import time
import traceback
from collections import defaultdict
from pathlib import Path
from typing import TextIO

import numpy as np

from speedy import runtime
from speedy.bench.memory import current_rss, peak_rss
from speedy.bench.protocol import (
    REQUESTS,
    AnyRequest,
    Batch,
    BatchTiming,
    Failure,
    FirstChunk,
    Load,
    Loaded,
    MeasureTask,
    MemoryPeaks,
    Message,
    ReadMemory,
    Ready,
    Reply,
    SavedOutputs,
    SaveOutputs,
    TaskFigures,
    Timings,
    Whole,
)
from speedy.chain import Chain
from speedy.errors import SpeedyError
from speedy.quality import snr_db
from speedy.runtime import Model
from speedy.specs import Feeds
from speedy.tasks import Streamer, streamer_of, task_for


def read_inputs(path: Path) -> dict[str, dict[str, Feeds]]:
    """INPUTS.npz as {"utterance": {i: feeds}, "batch": {n: feeds}}."""
    found: dict[str, dict[str, Feeds]] = defaultdict(dict)
    with np.load(path, allow_pickle=False) as stored:
        for key in stored.files:
            group, index, name = key.split("/")
            found[group].setdefault(index, {})[name] = stored[key]
    return found


class Worker:
    """What the parent can ask for, each answered by its reply model."""

    def __init__(
        self,
        artifact: Path,
        device: str,
        threads: int | None,
        inputs: Path,
        vocoder: Path | None = None,
        chunk_seconds: float | None = None,
    ) -> None:
        self.artifact, self.device, self.threads, self.vocoder = artifact, device, threads, vocoder
        self.chunk_seconds = chunk_seconds
        found = read_inputs(inputs)
        self.utterances = [found["utterance"][str(i)] for i in range(len(found["utterance"]))]
        self.batches = found["batch"]
        self.model: Model | None = None
        self.chain: Chain | None = None  # with a vocoder: the artifact chained with it
        self.streamer: Streamer | None = None

    @property
    def loaded(self) -> Model:
        if self.model is None:
            raise SpeedyError("the worker has no artifact loaded", "send `load` first")
        return self.model

    def load(self) -> Loaded:
        """Open the artifact (after the vocoder, if any; both checked by the parent); time that
        and its first (cold) run on the first utterance, through the vocoder too."""
        open_model = lambda path: runtime.load(path, self.device, self.threads, verify=False)  # noqa: E731
        vocoder = open_model(self.vocoder) if self.vocoder else None
        before = current_rss()
        start = time.perf_counter()
        self.model = open_model(self.artifact)
        loaded = time.perf_counter()
        self.task = task_for(self.model.manifest.model)
        if vocoder is None:
            self.task.run(self.model, self.utterances[0])
        else:
            self.chain = Chain(self.model, vocoder)
            self.chain.speak(self.utterances[0])
        if self.chunk_seconds:
            self.streamer = streamer_of(self.task, self.chunk_seconds)
        return Loaded(
            load_seconds=loaded - start,
            first_run_seconds=time.perf_counter() - loaded,
            rss_before_load=before,
            rss_after_load=current_rss(),
        )

    def whole(self) -> Timings:
        """Seconds to run each whole utterance; with a vocoder, those of each model too."""
        if self.chain is not None:
            stages = [self.chain.speak(feeds).seconds for feeds in self.utterances]
            return Timings(
                seconds=[sum(s.values()) for s in stages],
                stages={name: [s[name] for s in stages] for name in stages[0]},
            )
        seconds = []
        for feeds in self.utterances:
            start = time.perf_counter()
            self.task.run(self.loaded, feeds)
            seconds.append(time.perf_counter() - start)
        return Timings(seconds=seconds)

    def batch(self, size: int) -> BatchTiming:
        """Seconds for one batched run, and the seconds of audio it made."""
        start = time.perf_counter()
        outputs = self.task.run(self.loaded, self.batches[str(size)])
        seconds = time.perf_counter() - start
        return BatchTiming(seconds=seconds, audio_seconds=self.task.seconds(outputs))

    def task_figures(self) -> TaskFigures:
        """The task's own speed figures on the first utterance (e.g. per-step decode times)."""
        return TaskFigures(figures=self.task.measure(self.loaded, self.utterances[0]))

    def first_chunk(self) -> Timings:
        """Seconds from starting a stream of each utterance to its first audio chunk."""
        assert self.streamer is not None
        seconds = []
        for feeds in self.utterances:
            start = time.perf_counter()
            chunks = self.streamer.stream(self.loaded, feeds)
            next(chunks)
            seconds.append(time.perf_counter() - start)
            chunks.close()
        return Timings(seconds=seconds)

    def outputs(self, directory: str) -> SavedOutputs:
        """Save each utterance's outputs as DIR/<i>.npz (with a vocoder, its outputs as
        DIR/<i>.final.npz); when streaming, stream it as well and compare the streamed audio
        with the whole-utterance audio (seam SNR)."""
        seam_snr, stream_seconds = [], 0.0
        for index, feeds in enumerate(self.utterances):
            outputs = self.task.run(self.loaded, feeds)
            np.savez(Path(directory) / f"{index}.npz", **outputs)
            if self.chain is not None:
                (handed,) = self.task.handoff(outputs)
                final = self.chain.tasks[1]
                final_outputs = final.run(self.chain.second, final.inputs(handed))
                np.savez(Path(directory) / f"{index}.final.npz", **final_outputs)
            if self.streamer is None:
                continue
            start = time.perf_counter()
            streamed = np.concatenate(list(self.streamer.stream(self.loaded, feeds)))
            stream_seconds += time.perf_counter() - start
            (whole,) = self.task.waveforms(outputs) or []
            seam_snr.append(snr_db(whole, streamed))
        return SavedOutputs(seam_snr_db=seam_snr, stream_seconds=stream_seconds or None)

    def memory(self) -> MemoryPeaks:
        """Peak resident memory so far, and peak GPU memory through PyTorch's allocator."""
        gpu = None
        if self.device == "cuda":
            import torch

            gpu = torch.cuda.max_memory_allocated() if torch.cuda.is_initialized() else None
        return MemoryPeaks(rss_peak=peak_rss(), gpu_peak=gpu)


def _answer(worker: Worker, request: AnyRequest) -> Reply:
    """The worker's reply to one request."""
    match request:
        case Load():
            return worker.load()
        case Whole():
            return worker.whole()
        case Batch(size=size):
            return worker.batch(size)
        case FirstChunk():
            return worker.first_chunk()
        case MeasureTask():
            return worker.task_figures()
        case SaveOutputs(directory=directory):
            return worker.outputs(directory)
        case ReadMemory():
            return worker.memory()


def _send(channel: TextIO, message: Message) -> None:
    channel.write(message.model_dump_json() + "\n")
    channel.flush()


def serve(worker: Worker, channel: TextIO) -> None:
    """Answer requests from stdin until its end."""
    _send(channel, Ready())
    for line in sys.stdin:
        request = REQUESTS.validate_json(line)
        try:
            _send(channel, _answer(worker, request))
        except SpeedyError as exc:
            _send(channel, Failure(problem=exc.problem, fix=exc.fix))
        except Exception as exc:
            traceback.print_exc()
            problem = (
                f"unexpected {type(exc).__name__} in `{request.op}`: {str(exc).splitlines()[0]}"
            )
            _send(channel, Failure(problem=problem, fix="see the worker's log"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--inputs", type=Path, required=True)
    parser.add_argument("--vocoder", type=Path)
    parser.add_argument("--chunk-seconds", type=float)
    args = parser.parse_args()
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "w")  # replies only
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints go to the log
    worker = Worker(
        args.artifact,
        args.device,
        args.threads or None,
        args.inputs,
        args.vocoder,
        args.chunk_seconds,
    )
    serve(worker, channel)


if __name__ == "__main__":
    main()
