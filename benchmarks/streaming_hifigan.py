"""Streaming targets of issue 4 on the real HiFi-GAN V1, FP32 ONNX artifact, 2 threads.

1. Seams: 0.25 s chunks against whole-utterance audio, SNR per clip (target >= 40 dB).
2. First-chunk latency with 0.25 s chunks, the whole mel available (target <= 200 ms on the
   2-core CPU): median over clips x repeats, beside the whole-utterance RTF measured in the same
   loop, so that a busy machine shows in both.
3. Long audio: 10 s and 10 min of mel streamed piece by piece, each in a fresh process
   (`python -m speedy.bench.long_audio`), peak RSS ratio (target <= 1.2).

Writes benchmarks/results/streaming_hifigan_cpu.json with machine info.

    python benchmarks/streaming_hifigan.py [--data DIR] [--repeats N] [--long-seconds S|0]
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from speedy import runtime
from speedy.audio.cache import FeatureCache, default_cache_dir
from speedy.bench.machine import bench_machine
from speedy.machine import write_result
from speedy.pipeline import run_recipe
from speedy.quality import snr_db
from speedy.recipe import DEFAULT_DATA, load_recipe
from speedy.tasks import task_for
from speedy.tasks.vocoder import Vocoder

ROOT = Path(__file__).resolve().parent
SHARED_CLIPS = ROOT.parent.parent / "shared" / "data" / "ljspeech" / "wavs"
TARGETS = {"seam_snr_db_min": 40.0, "first_chunk_ms_max": 200.0, "long_rss_ratio_max": 1.2}


def long_audio(artifact: Path, seconds: float, chunk_seconds: float, threads: int) -> dict:
    """Peak memory of streaming `seconds` of mel, in a fresh process."""
    command = [sys.executable, "-m", "speedy.bench.long_audio", str(artifact)]
    command += ["--seconds", str(seconds), "--chunk-seconds", str(chunk_seconds)]
    command += ["--threads", str(threads)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=SHARED_CLIPS if SHARED_CLIPS.is_dir() else DEFAULT_DATA
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chunk-seconds", type=float, default=0.25)
    parser.add_argument("--long-seconds", type=float, default=600.0)
    parser.add_argument(
        "--long-chunk-seconds", type=float, default=1.0, help="chunks of the long-audio runs"
    )
    parser.add_argument("--build-dir", type=Path, default=ROOT.parent / "build")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "streaming_hifigan_cpu.json")
    args = parser.parse_args()

    recipe = load_recipe("hifigan_v1")
    outcomes, _ = run_recipe(recipe, args.build_dir, threads=args.threads)
    artifact = {o.stage: o.artifact for o in outcomes}["export"]  # FP32 ONNX
    model = runtime.load(artifact.path, threads=args.threads)
    spec = model.manifest.model
    task = task_for(spec)
    assert isinstance(task, Vocoder)
    mels = task.read_data(args.data, FeatureCache(default_cache_dir()))
    streamer = task.streamer(args.chunk_seconds)
    chunk = streamer.chunk

    seams, wholes = [], []
    for mel in mels:
        whole = task.waveforms(model.run(task.inputs(mel)))[0]
        wholes.append(whole)
        streamed = np.concatenate(list(streamer.stream(model, task.inputs(mel))))
        seams.append(snr_db(whole, streamed))

    first, rtf = [], []
    for _ in range(args.repeats):  # first chunks and whole utterances take turns
        for mel, whole in zip(mels, wholes, strict=True):
            inputs = task.inputs(mel)
            start = time.perf_counter()  # a request's streamer: the recorded receptive field read
            chunks = task.streamer(args.chunk_seconds).stream(model, inputs)
            next(chunks)
            first.append(time.perf_counter() - start)
            chunks.close()
            start = time.perf_counter()
            model.run(task.inputs(mel))
            rtf.append((time.perf_counter() - start) / (whole.size / spec.audio.sample_rate))
    first_ms = 1000 * np.array(first)

    memory, ratio = None, None
    if args.long_seconds:  # 0: skip the long runs (minutes of CPU), e.g. to re-time latency
        short = long_audio(artifact.path, 10.0, args.long_chunk_seconds, args.threads)
        long = long_audio(artifact.path, args.long_seconds, args.long_chunk_seconds, args.threads)
        ratio = long["rss_peak"] / short["rss_peak"]
        memory = {"10s": short, f"{args.long_seconds:g}s": long, "rss_peak_ratio": ratio}

    context = streamer.context
    result = {
        "benchmark": "hifigan_v1 streaming: seams, first-chunk latency, long-audio memory",
        "machine": bench_machine(),
        "artifact": str(artifact.path),
        "data": {"dir": str(args.data), "clips": len(mels)},
        "settings": {
            "threads": args.threads,
            "chunk_seconds": args.chunk_seconds,
            "chunk_frames": chunk,
            "context_frames": [context.left, context.right],
            "repeats": args.repeats,
            "long_chunk_seconds": args.long_chunk_seconds,
        },
        "seams": {"snr_db_per_clip": seams, "snr_db_min": min(seams)},
        "first_chunk": {
            "p50_ms": float(np.percentile(first_ms, 50)),
            "p95_ms": float(np.percentile(first_ms, 95)),
            "min_ms": float(first_ms.min()),
            "whole_utterance_rtf_median": statistics.median(rtf),
        },
        "long_audio": memory,
        "targets": {
            **TARGETS,
            "seam_met": min(seams) >= TARGETS["seam_snr_db_min"],
            "first_chunk_met": float(np.percentile(first_ms, 50)) <= TARGETS["first_chunk_ms_max"],
            "long_rss_met": None if ratio is None else ratio <= TARGETS["long_rss_ratio_max"],
        },
    }
    print(f"long audio RSS ratio {ratio}")
    write_result(args.out, result, ("seams", "first_chunk", "targets"))


if __name__ == "__main__":
    main()
