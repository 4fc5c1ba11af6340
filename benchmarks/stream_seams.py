"""Seams of streamed HiFi-GAN V1 audio against the whole utterance, FP32 and mixed INT8.

The default recipe's FP32 (simplify) and mixed-INT8 (quantize) artifacts stream the shipped clips,
a seeded noise mel of 700 frames (long enough that 8 threads split the first layers' columns) and
a 40-frame utterance, in 0.1, 0.25 and 0.5 s chunks, at 1, 2, 4 and 8 intra-op threads. Each
stream runs twice: in the shortest windows (chunk and receptive-field context: the streaming
before issue 34 item 8) and in windows of at least `EXACT_WINDOW` frames. Figures: the largest
|streamed - whole| sample in steps of 16-bit audio (LSB, 1/32768), the share of samples that
differ at all, and the stream's compute time per second of audio. `exact_window` says which
window each precision is served with (`served`). Threads above the machine's cores count for the
numerics only, not for the times.

Uses build/hifigan_v1/{simplify,quantize} (`make run`) as they are, or builds them. Writes
benchmarks/results/stream_seams_cpu.json with machine info.

    python benchmarks/stream_seams.py [--data DIR] [--threads 1,2,4,8] [--chunks 0.1,0.25,0.5]
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from speedy import runtime
from speedy.artifact import Artifact
from speedy.audio.cache import FeatureCache, default_cache_dir
from speedy.bench.machine import bench_machine
from speedy.machine import write_result
from speedy.pipeline import run_recipe
from speedy.recipe import DEFAULT_DATA, load_recipe
from speedy.tasks import task_for
from speedy.tasks.streaming import EXACT_WINDOW, exact_window, stream_windows

ROOT = Path(__file__).resolve().parent
LSB = 1 / 32768
WINDOWS = {"shortest": 1, "exact": EXACT_WINDOW}
STAGES = {"int8": "quantize", "fp32": "simplify"}  # the recipe's mixed-INT8 and FP32 artifacts


def numbers(text: str, kind: type) -> list:
    return [kind(x) for x in text.split(",")]


def measure(model, mels: dict[str, np.ndarray], seconds: float) -> dict:
    """Seam errors and stream time of every input in both windows, at one chunk length."""
    task = task_for(model.manifest.model)
    streamer = task.streamer(seconds)

    def run(window: np.ndarray) -> np.ndarray:
        return task.waveforms(model.run(task.inputs(window)))[0]

    wholes = {name: run(mel) for name, mel in mels.items()}
    audio_seconds = sum(w.size for w in wholes.values()) / task.audio.sample_rate
    found = {}
    for label, width in WINDOWS.items():
        per_input, unequal, total, spent = {}, 0, 0, 0.0
        for name, mel in mels.items():
            start = time.perf_counter()
            pieces = stream_windows(
                run, [mel], streamer.chunk, streamer.context, streamer.limits, width
            )
            streamed = np.concatenate(list(pieces))
            spent += time.perf_counter() - start
            error = np.abs(streamed - wholes[name])
            per_input[name] = round(float(error.max() / LSB), 3)
            unequal, total = unequal + int(np.count_nonzero(error)), total + error.size
        found[label] = {
            "min_window": width,
            "max_lsb": max(per_input.values()),
            "max_lsb_per_input": per_input,
            "unequal_share": round(unequal / total, 5),
            "stream_rtf": round(spent / audio_seconds, 3),
        }
    context = streamer.context
    return {
        "chunk_seconds": seconds,
        "chunk_frames": streamer.chunk,
        "context_frames": [context.left, context.right],
        **found,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--threads", default="1,2,4,8", help="intra-op thread counts")
    parser.add_argument("--chunks", default="0.1,0.25,0.5", help="chunk lengths in seconds")
    parser.add_argument("--build-dir", type=Path, default=ROOT.parent / "build")
    parser.add_argument(
        "--rebuild", action="store_true", help="run the recipe first (reusing unchanged stages)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="keep the configurations already in --out"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "stream_seams_cpu.json")
    args = parser.parse_args()

    built = {stage: args.build_dir / "hifigan_v1" / stage for stage in STAGES.values()}
    if args.rebuild or not all((path / "speedy.json").is_file() for path in built.values()):
        outcomes, _ = run_recipe(load_recipe("hifigan_v1"), args.build_dir, threads=2)
        artifacts = {o.stage: o.artifact for o in outcomes}
    else:  # `make run`'s artifacts as they are (run_recipe rebuilds them after any code change)
        artifacts = {stage: Artifact.open(path) for stage, path in built.items()}
    first = runtime.load(artifacts["simplify"].path, threads=1)
    task = task_for(first.manifest.model)
    clips = task.read_data(args.data, FeatureCache(default_cache_dir()))
    noise = np.random.default_rng(34_008).standard_normal((task.audio.n_mels, 700)) * 2 - 5
    mels = {f"clip{i}": mel for i, mel in enumerate(clips)}
    mels |= {"noise700": noise.astype(np.float32), "short40": noise[:, :40].astype(np.float32)}

    results: list[dict] = []
    summary: dict[str, dict] = {}
    result = {
        "benchmark": "hifigan_v1 stream seams: streamed vs whole-utterance audio, FP32 and INT8",
        "machine": bench_machine(),
        "artifacts": {label: str(artifacts[stage].path) for label, stage in STAGES.items()},
        "data": {"dir": str(args.data), "clips": len(clips)},
        "inputs": {name: int(mel.shape[-1]) for name, mel in mels.items()},
        "settings": {
            "threads": numbers(args.threads, int),
            "chunk_seconds": numbers(args.chunks, float),
            "exact_window_frames": EXACT_WINDOW,
            "lsb": "1/32768 (one step of 16-bit audio)",
        },
        "complete": False,
        "summary": summary,
        "results": results,
    }
    if args.resume and args.out.is_file():  # a run cut short: what it measured stays
        previous = json.loads(args.out.read_text())
        results += previous["results"]
        threads = {*previous["settings"]["threads"], *result["settings"]["threads"]}
        result["settings"]["threads"] = sorted(threads)
        result["resumed_from"] = {
            k: previous["machine"].get(k) for k in ("measured_at", "load_average")
        }
    for label, stage in STAGES.items():  # INT8 first: the figures in question
        for threads in numbers(args.threads, int):
            model = runtime.load(artifacts[stage].path, threads=threads)
            for seconds in numbers(args.chunks, float):
                done = (label, threads, seconds)
                if any((r["artifact"], r["threads"], r["chunk_seconds"]) == done for r in results):
                    continue
                row = measure(model, mels, seconds) | {"artifact": label, "threads": threads}
                results.append(row)
                print(
                    f"{label} {threads} threads {seconds} s: shortest windows "
                    f"{row['shortest']['max_lsb']} LSB, {EXACT_WINDOW}-frame windows "
                    f"{row['exact']['max_lsb']} LSB",
                    flush=True,
                )
                write_result(args.out, result)  # after each row: a long run keeps its part
    for label, stage in STAGES.items():  # every configuration measured, this run or before
        precision = artifacts[stage].manifest.precision
        served = exact_window(precision)
        key = "exact" if served == EXACT_WINDOW else "shortest"
        for threads in sorted({r["threads"] for r in results if r["artifact"] == label}):
            rows = [r for r in results if (r["artifact"], r["threads"]) == (label, threads)]
            summary[f"{label}_{threads}_threads"] = {
                "precision": precision,
                "served_min_window": served,
                "max_lsb_served": max(r[key]["max_lsb"] for r in rows),
                "max_lsb_shortest_windows": max(r["shortest"]["max_lsb"] for r in rows),
                "max_lsb_exact_windows": max(r["exact"]["max_lsb"] for r in rows),
            }
    result["settings"]["threads"] = sorted({r["threads"] for r in results})
    result["complete"] = True
    write_result(args.out, result, headline=["summary"])


if __name__ == "__main__":
    main()
