"""Stream a long mel through a vocoder artifact in this process and report its peak memory.

    python -m speedy.bench.long_audio ARTIFACT --seconds 600 [--data DIR] [--output OUT.wav]

The mel arrives piece by piece (the data's clips, in turn, until `--seconds`), as from an
acoustic model, and the audio leaves chunk by chunk (into `--output`, or counted only), so
nothing the size of the whole utterance is ever held. Prints one JSON object; run it once per
length, each in a fresh process, to compare peak memory across lengths.
"""

import argparse
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from speedy import runtime
from speedy.audio.cache import FeatureCache, default_cache_dir
from speedy.bench.memory import current_rss, peak_rss
from speedy.errors import SpeedyError
from speedy.tasks import streamer_of, task_for


def mel_pieces(clips: Sequence[np.ndarray], frames: int) -> Iterator[np.ndarray]:
    """The clips' mels one after another, over and over, `frames` frames in all."""
    sent = 0
    while sent < frames:
        for clip in clips:
            piece = clip[..., : frames - sent]
            yield piece
            sent += piece.shape[-1]
            if sent >= frames:
                return


def stream_long(
    artifact: Path,
    seconds: float,
    data: Path | None = None,
    chunk_seconds: float = 0.25,
    threads: int | None = None,
    output: Path | None = None,
) -> dict[str, float | int]:
    """Stream `seconds` of mel through `artifact`; memory and timing figures of this process."""
    model = runtime.load(artifact, threads=threads)
    spec = model.manifest.model
    task = task_for(spec)
    streamer = streamer_of(task, chunk_seconds)
    if streamer is None:
        raise SpeedyError(f"a {task.name} model does not stream", "stream a vocoder")
    clips = task.read_data(data or task.default_data, FeatureCache(default_cache_dir()))
    frames = round(seconds * task.example_rate)  # along the examples' last axis
    pieces = (task.inputs(piece) for piece in mel_pieces(clips, frames))
    before = current_rss()
    samples = chunks = 0
    start = time.perf_counter()
    sink = sf.SoundFile(output, "w", spec.audio.sample_rate, 1, "PCM_16") if output else None
    try:
        for audio in streamer.stream(model, pieces):
            samples += audio.size
            chunks += 1
            if sink is not None:
                sink.write(np.clip(audio, -1.0, 1.0))
    finally:
        if sink is not None:
            sink.close()
    return {
        "audio_seconds": samples / spec.audio.sample_rate,
        "chunks": chunks,
        "wall_seconds": time.perf_counter() - start,
        "rss_before_stream": before,
        "rss_peak": peak_rss(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--chunk-seconds", type=float, default=0.25)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    figures = stream_long(
        args.artifact, args.seconds, args.data, args.chunk_seconds, args.threads, args.output
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
