"""Thread pools for a Qwen3-TTS frame on this CPU: the frame loop of a quantized 0.6B artifact
(`speedy quantize build/qwen3_tts_0.6b/export --precision int4 -o DIR`) with its sessions'
intra-op pools

* `own_spinning`: one pool per session, spinning after a run (ONNX Runtime's default);
* `own_not_spinning`: one pool per session, not spinning (speedy's runtime for multi-graph
  artifacts on CPU);
* `global`: one process-wide pool every session shares (ONNX Runtime's global thread pool,
  spinning), which must be set before the process's first session: so each mode runs in a
  process of its own, the modes in turns, ROUNDS times; each process times 3 loops of FRAMES
  frames after a warm-up.

    python benchmarks/qwen3_tts_pools.py DIR [--rounds N] [--threads T]
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
MODES = ("own_spinning", "own_not_spinning", "global")
FRAMES = 20


def loops_ms(path: Path, mode: str, threads: int) -> list[float]:
    """Milliseconds per frame of 3 timed loops (after one warm-up) in `mode`."""
    from onnxruntime.capi import _pybind_state

    if mode == "global":  # before any session: the process's environment takes it
        _pybind_state.set_global_thread_pool_sizes(threads, 1)
    from qwen3_tts import frame_ms, frames_of, prompt_inputs, session_model

    import speedy.backends.ort.session as ort_session
    from speedy.artifact import Artifact
    from speedy.pipeline import context_for

    own_options = ort_session.session_options

    def options(settings, count, spinning=True):  # the shared pool replaces each session's
        chosen = own_options(settings, count, spinning)
        chosen.use_per_session_threads = mode != "global"
        return chosen

    ort_session.session_options = options
    model = session_model(path, threads, spinning=mode != "own_not_spinning")
    manifest = Artifact.open(path, verify=False).manifest
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "data.txt").write_text("Hello.\n")
        task = context_for(manifest.model, Path(tmp) / "data.txt", threads).task
    inputs, generation = prompt_inputs(task), frames_of(task, FRAMES)
    task.generate(model, inputs, generation)
    return [frame_ms(model, task, inputs, generation) for _ in range(3)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mode", choices=MODES, help="(one process's part)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "qwen3_tts_pools_cpu.json")
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(loops_ms(args.artifact, args.mode, args.threads)))
        return
    from speedy.artifact import Artifact
    from speedy.bench.machine import bench_machine
    from speedy.machine import write_result

    ms: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            command = [sys.executable, __file__, str(args.artifact), "--mode", mode,
                       "--threads", str(args.threads)]  # fmt: skip
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            ms[mode] += json.loads(done.stdout.splitlines()[-1])
    medians = {mode: float(np.median(v)) for mode, v in ms.items()}
    manifest = Artifact.open(args.artifact, verify=False).manifest
    result = {
        "benchmark": f"Qwen3-TTS 0.6B frame loop ({FRAMES} frames, a 20-word prompt) with "
        f"ONNX Runtime thread pools in three modes, {args.threads} threads, each mode in "
        f"processes of its own taking turns, {args.rounds} rounds",
        "machine": bench_machine(),
        "artifact": str(args.artifact),
        "precisions": {name: graph.precision for name, graph in manifest.graphs.items()},
        "weights": "seeded (no checkpoint)" if manifest.model.checkpoint is None else "checkpoint",
        "ms_per_frame": ms,
        "median_ms_per_frame": medians,
        "median_rtf": {mode: m / 80 for mode, m in medians.items()},
    }
    write_result(args.out, result, ("median_ms_per_frame",))


if __name__ == "__main__":
    sys.exit(main())
