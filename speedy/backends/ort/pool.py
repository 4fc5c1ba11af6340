"""One intra-op thread pool for every ONNX Runtime session of a process (ORT's global pool), for
the processes that only run artifacts on CPU: `speedy infer`, `synth` and `serve`.

Graphs that take turns (a talker's decode step, its code predictor, a codec's decoder step) then
run on the same threads, which spin between runs, instead of each session waking a pool of its
own on the same cores (a 4-bit Qwen3-TTS frame on 2 cores: 75 ms on one shared pool; 117 ms on a
pool per session that sleeps after each run, 135 ms on pools that spin)."""

import onnxruntime as ort

_threads: int | None = None


def share(threads: int) -> None:
    """Have every later session of this process run on one pool of `threads` threads. Call it
    before the process opens any session: ONNX Runtime then refuses sessions with pools of their
    own, so the process opens its sessions with `session_options`."""
    global _threads
    if _threads is None:
        ort.set_global_thread_pool_sizes(threads, 1)
        _threads = threads


def shared_threads() -> int | None:
    """The threads of the pool this process's sessions share; None where each has its own."""
    return _threads
