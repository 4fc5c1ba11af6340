"""Thread pools for a Qwen3-TTS frame on this CPU: the frame loop of a quantized 0.6B artifact
(`speedy quantize build/qwen3_tts_0.6b/export --precision int4 -o DIR`) with its sessions'
intra-op pools

* `own_spinning`: one pool per session, spinning after a run (ONNX Runtime's default);
* `own_not_spinning`: one pool per session, not spinning (speedy's runtime for multi-graph
  artifacts on CPU in a process that also opens other sessions);
* `shared`: one process-wide pool every session shares (ONNX Runtime's global thread pool, which
  `speedy synth` and `speedy serve` set on CPU through `speedy.backends.ort.pool.share`). It must
  be set before the process's first session, so each mode runs in a process of its own, the
  modes in turns, ROUNDS times; each process times 3 loops of FRAMES frames after a warm-up and,
  given the Qwen3-TTS-Tokenizer-12Hz artifact (`--codec`), the first audio and a 30 s stream
  (`benchmarks/qwen3_tts.py` measures them the same way).

    python benchmarks/qwen3_tts_pools.py DIR [--rounds N] [--threads T] [--codec DIR]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from speedy import runtime
from speedy.artifact import Artifact
from speedy.backends.ort.session import OnnxSession
from speedy.specs import Feeds
from speedy.tasks.frame_codes import FrameCodes, FrameGeneration

ROOT = Path(__file__).resolve().parent
MODES = ("own_spinning", "own_not_spinning", "shared")
FRAMES = 20
STREAM_SECONDS = 30.0


def session_model(path: Path, threads: int, spinning: bool) -> runtime.Model:
    """The artifact at `path`, each graph in an ONNX Runtime session of `threads` intra-op
    threads whose pool spins after a run, or not."""
    artifact = Artifact.open(path, verify=False)
    dims = artifact.manifest.model.dims
    return runtime.Model(artifact, {
        name: OnnxSession(name, graph, artifact.file(name), dims, "cpu", threads, None, spinning)
        for name, graph in artifact.manifest.graphs.items()})  # fmt: skip


def frame_ms(
    model: runtime.Model, task: FrameCodes, inputs: Feeds, generation: FrameGeneration
) -> float:
    """Milliseconds per frame of one generation."""
    start = time.perf_counter()
    outputs = task.generate(model, inputs, generation)
    return 1000 * (time.perf_counter() - start) / outputs["codes"].shape[2]


def measured(path: Path, mode: str, threads: int, codec_path: Path | None) -> dict:
    """Milliseconds per frame of 3 timed loops (after one warm-up) in `mode`, and with a codec
    the first audio and a streamed utterance."""
    from qwen3_tts import first_audio, frames_of, prompt_inputs, streamed

    from speedy.backends.ort import pool
    from speedy.pipeline import context_for
    from speedy.tasks import streamer_of, task_for

    if mode == "shared":  # before any session, as `speedy synth` does
        pool.share(threads)
    if mode == "own_spinning":
        model = session_model(path, threads, spinning=True)
    else:
        model = runtime.load(path, threads=threads, verify=False)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "data.txt").write_text("Hello.\n")
        task = context_for(model.manifest.model, Path(tmp) / "data.txt", threads).task
    inputs, generation = prompt_inputs(task), frames_of(task, FRAMES)
    task.generate(model, inputs, generation)
    result: dict = {"ms": [frame_ms(model, task, inputs, generation) for _ in range(3)]}
    if codec_path is not None:
        codec = runtime.load(codec_path, threads=threads, verify=False)
        codec_task = task_for(codec.manifest.model)
        streamer = streamer_of(codec_task, 1 / task.s.frames_per_second)
        result["first_audio"] = first_audio(model, task, codec, streamer)
        result["stream"] = streamed(model, task, codec, codec_task, streamer, STREAM_SECONDS)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--codec", type=Path, help="Qwen3-TTS-Tokenizer-12Hz artifact")
    parser.add_argument("--mode", choices=MODES, help="(one process's part)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "qwen3_tts_pools_cpu.json")
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measured(args.artifact, args.mode, args.threads, args.codec)))
        return
    from speedy.bench.machine import bench_machine
    from speedy.machine import write_result

    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    codec = ["--codec", str(args.codec)] if args.codec else []
    for _ in range(args.rounds):
        for mode in MODES:
            command = [sys.executable, __file__, str(args.artifact), "--mode", mode,
                       "--threads", str(args.threads), *codec]  # fmt: skip
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            runs[mode].append(json.loads(done.stdout.splitlines()[-1]))
    medians = {
        mode: float(np.median([ms for r in v for ms in r["ms"]])) for mode, v in runs.items()
    }
    manifest = Artifact.open(args.artifact, verify=False).manifest
    result = {
        "benchmark": f"Qwen3-TTS 0.6B frame loop ({FRAMES} frames, a 20-word prompt) with "
        f"ONNX Runtime thread pools in three modes, {args.threads} threads, each mode in "
        f"processes of its own taking turns, {args.rounds} rounds"
        + (
            f"; first audio and a {STREAM_SECONDS:.0f} s stream through {args.codec}"
            if codec
            else ""
        ),
        "machine": bench_machine(),
        "artifact": str(args.artifact),
        "precisions": {name: graph.precision for name, graph in manifest.graphs.items()},
        "weights": "seeded (no checkpoint)" if manifest.model.checkpoint is None else "checkpoint",
        "runs": runs,
        "median_ms_per_frame": medians,
        "median_rtf": {mode: m / 80 for mode, m in medians.items()},
    }
    write_result(args.out, result, ("median_ms_per_frame",))


if __name__ == "__main__":
    sys.exit(main())
