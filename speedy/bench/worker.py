"""One artifact measured in its own process, so its load time and peak memory are its own.

    python -m speedy.bench.worker ARTIFACT --device cpu --threads 2 --inputs INPUTS.npz \
        [--vocoder VOCODER]

INPUTS.npz holds the model inputs the parent made once for all workers: `utterance/<i>/<name>`
(whole utterances), `batch/<n>/<name>` (batched runs) and `stream/<i>` (features to stream).
The parent (`speedy.bench.pool`) sends one JSON command per line on stdin and reads one JSON reply
per line on stdout; anything the libraries print goes to stderr. Every reply carries `ok`; a
failed command replies `problem` and `fix`. Timings cover `session.run` (or the stream) only.
With a vocoder (text-to-mel artifacts), whole utterances run through both models, each timed
(`speedy.synth.Synthesizer.speak`), and their audio is saved beside their outputs.
"""

import argparse
import json
import os
import sys
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from speedy import runtime
from speedy.bench.memory import current_rss, peak_rss
from speedy.errors import SpeedyError
from speedy.quality import snr_db
from speedy.runtime.base import Session
from speedy.streaming import stream
from speedy.synth import Synthesizer

Feeds = dict[str, np.ndarray]


def read_inputs(path: Path) -> dict[str, dict[str, Any]]:
    """INPUTS.npz as {"utterance": {i: feeds}, "batch": {n: feeds}, "stream": {i: features}}."""
    found: dict[str, dict[str, Any]] = defaultdict(dict)
    with np.load(path, allow_pickle=False) as stored:
        for key in stored.files:
            group, index, *name = key.split("/")
            if name:
                found[group].setdefault(index, {})[name[0]] = stored[key]
            else:
                found[group][index] = stored[key]
    return found


class Worker:
    """The commands the parent can send; each returns a JSON-ready dict."""

    def __init__(
        self,
        artifact: Path,
        device: str,
        threads: int | None,
        inputs: Path,
        vocoder: Path | None = None,
    ) -> None:
        self.artifact, self.device, self.threads, self.vocoder = artifact, device, threads, vocoder
        found = read_inputs(inputs)
        self.utterances: list[Feeds] = [
            found["utterance"][str(i)] for i in range(len(found["utterance"]))
        ]
        self.batches: dict[str, Feeds] = found["batch"]
        self.streams: list[np.ndarray] = [
            found["stream"][str(i)] for i in range(len(found["stream"]))
        ]
        self.session: Session | None = None
        self.synth: Synthesizer | None = None  # with a vocoder: the artifact chained with it

    @property
    def loaded(self) -> Session:
        if self.session is None:
            raise SpeedyError("the worker has no artifact loaded", "send `load` first")
        return self.session

    def load(self) -> dict[str, Any]:
        """Open the artifact (after the vocoder, if any); time that and its first (cold) run on
        the first utterance, through the vocoder too."""
        vocoder = runtime.load(self.vocoder, self.device, self.threads) if self.vocoder else None
        before = current_rss()
        start = time.perf_counter()
        self.session = runtime.load(self.artifact, device=self.device, threads=self.threads)
        loaded = time.perf_counter()
        if vocoder is None:
            self.session.run(self.utterances[0])
        else:
            self.synth = Synthesizer(self.session, vocoder, (self.artifact, vocoder.model_file))
            self.synth.speak(self.utterances[0])
        return {
            "load_seconds": loaded - start,
            "first_run_seconds": time.perf_counter() - loaded,
            "rss_before_load": before,
            "rss_after_load": current_rss(),
        }

    def whole(self) -> dict[str, Any]:
        """Seconds to run each whole utterance; with a vocoder, those of each model too."""
        if self.synth is not None:
            stages = [self.synth.speak(feeds).seconds for feeds in self.utterances]
            return {
                "seconds": [sum(s.values()) for s in stages],
                "stages": {name: [s[name] for s in stages] for name in stages[0]},
            }
        seconds = []
        for feeds in self.utterances:
            start = time.perf_counter()
            self.loaded.run(feeds)
            seconds.append(time.perf_counter() - start)
        return {"seconds": seconds}

    def batch(self, size: int) -> dict[str, Any]:
        """Seconds for one batched run, and the seconds of audio it made."""
        session = self.loaded
        start = time.perf_counter()
        outputs = session.run(self.batches[str(size)])
        seconds = time.perf_counter() - start
        return {
            "seconds": seconds,
            "audio_seconds": session.manifest.model.adapter().seconds(outputs),
        }

    def first_chunk(self, chunk: int) -> dict[str, Any]:
        """Seconds from starting a stream of each utterance to its first audio chunk."""
        seconds = []
        for features in self.streams:
            start = time.perf_counter()
            chunks = stream(self.loaded, features, chunk)
            next(chunks)
            seconds.append(time.perf_counter() - start)
            chunks.close()
        return {"seconds": seconds}

    def outputs(self, directory: str, chunk: int | None) -> dict[str, Any]:
        """Save each utterance's outputs as DIR/<i>.npz, with a vocoder its audio as
        DIR/<i>.audio.npy; with `chunk`, stream it as well and compare the streamed audio with
        the whole-utterance audio (seam SNR)."""
        session = self.loaded
        family = session.manifest.model.adapter()
        seam_snr, stream_seconds = [], 0.0
        for index, feeds in enumerate(self.utterances):
            outputs = session.run(feeds)
            np.savez(Path(directory) / f"{index}.npz", **outputs)
            if self.synth is not None:
                audio = self.synth.vocode(self.synth.mel(outputs))
                np.save(Path(directory) / f"{index}.audio.npy", audio)
            if chunk is None:
                continue
            start = time.perf_counter()
            streamed = np.concatenate(list(stream(session, self.streams[index], chunk)))
            stream_seconds += time.perf_counter() - start
            seam_snr.append(snr_db(family.waveform(outputs), streamed))
        return {"seam_snr_db": seam_snr, "stream_seconds": stream_seconds if chunk else None}

    def memory(self) -> dict[str, Any]:
        """Peak resident memory so far, and peak GPU memory through PyTorch's allocator."""
        gpu = None
        if self.device == "cuda":
            import torch

            gpu = torch.cuda.max_memory_allocated() if torch.cuda.is_initialized() else None
        return {"rss_peak": peak_rss(), "gpu_peak": gpu}


def _reply(channel: TextIO, message: dict[str, Any]) -> None:
    channel.write(json.dumps(message) + "\n")
    channel.flush()


def serve(worker: Worker, channel: TextIO) -> None:
    """Answer commands from stdin until `exit` or end of input."""
    commands: dict[str, Callable[..., dict[str, Any]]] = {
        "load": worker.load,
        "whole": worker.whole,
        "batch": worker.batch,
        "first_chunk": worker.first_chunk,
        "outputs": worker.outputs,
        "memory": worker.memory,
    }
    _reply(channel, {"ok": True, "ready": True})
    for line in sys.stdin:
        request = json.loads(line)
        op = request.pop("op")
        if op == "exit":
            return
        try:
            _reply(channel, {"ok": True, **commands[op](**request)})
        except SpeedyError as exc:
            _reply(channel, {"ok": False, "problem": exc.problem, "fix": exc.fix})
        except Exception as exc:
            traceback.print_exc()
            problem = f"unexpected {type(exc).__name__} in `{op}`: {str(exc).splitlines()[0]}"
            _reply(channel, {"ok": False, "problem": problem, "fix": "see the worker's log"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--inputs", type=Path, required=True)
    parser.add_argument("--vocoder", type=Path)
    args = parser.parse_args()
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "w")  # replies only
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints go to the log
    worker = Worker(args.artifact, args.device, args.threads or None, args.inputs, args.vocoder)
    serve(worker, channel)


if __name__ == "__main__":
    main()
