"""Qwen3-TTS 0.6B (the `qwen-tts` package's classes, published CustomVoice configuration, seeded
weights) on this CPU, one run, ONNX Runtime and PyTorch on the same threads: issue 33's figures.

1. Parity: upstream greedy `generate` (do_sample=False, subtalker_dosample=False) against the
   ONNX artifact's loop: one prefill and FRAMES frames, every codebook.
2. Speed on one prompt: upstream eager `generate` against ONNX Runtime FP32, dynamic INT8 and
   4-bit weight-only (MatMulNBits) artifacts in frames per second and real-time factor (a frame
   is 80 ms), each run twice, the second counted; one frame's parts (the talker's decode step at
   cache lengths 50 / 500 / 1,500, the code predictor's graph of 15 steps). ONNX Runtime runs in
   a process of its own on one shared thread pool, as `speedy synth` and `speedy serve` do (the
   quantizers here open sessions with pools of their own).
3. The bandwidth floor: the weight bytes a frame reads (the talker's decode step and the code
   predictor's steps, from each precision's graphs) over the read rate ONNX Runtime reaches
   here on one large MatMul of that precision.
4. Quality of INT8 and 4-bit against FP32 (the quantize stage's report: code agreement, first
   divergence, teacher-forced KL) on held-out sentences.
5. Speech with the Qwen3-TTS-Tokenizer-12Hz artifact (`--codec`, built by its recipe): first
   audio (prompt, first frame, its decoder_step) for a 20-word sentence, and a 30 s utterance
   streamed frame by frame as the fastest precision makes it: vLLM-Omni's underrun measure (a
   wait between chunks longer than the chunk's audio) and the stream against the whole decode of
   the same codes.

    python benchmarks/qwen3_tts.py [--frames N] [--threads T] [--codec DIR]
"""

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from speedy import runtime
from speedy.artifact import Artifact
from speedy.backends.ort import pool
from speedy.bench.machine import bench_machine
from speedy.families import resolve
from speedy.machine import write_result
from speedy.onnx_io import tensor_bytes
from speedy.pipeline import context_for, make_stage
from speedy.quantize.dynamic import quantize_dynamic_int8
from speedy.quantize.nbits import quantize_matmul_4bits
from speedy.specs import Feeds
from speedy.stages.base import execute
from speedy.tasks import streamer_of, task_for
from speedy.tasks.frame_codes import FrameCodes, FrameGeneration, Frames, Utterance

ROOT = Path(__file__).resolve().parent
RECIPE = "qwen3_tts_0.6b"
PROMPT = (  # 20 words
    "The quick brown fox jumps over the lazy dog, and then it runs all the way back home "
    "before the rain starts.",
    "ryan",
)
HELD_OUT = [  # quality sentences: none is in the recipe's data
    "Could you tell me the way to the railway station, please?",
    "今天下午我们一起去图书馆看书吧。",
    "The meeting has been moved to Thursday morning at nine.",
]
STEP_GRAPHS = ("decode", "predictor")
MATMULS = ("MatMul", "MatMulInteger", "MatMulNBits", "DynamicQuantizeMatMul", "Gemm")
GOALS = {
    "fp32_over_eager_min": 3.0,
    "fp32_within_floor_max": 1.3,
    "quantized_rtf_max": 1.0,
    "quantized_within_floor_max": 2.0,
}


def upstream_generate(network, task: FrameCodes, frames: int) -> tuple[np.ndarray, float]:
    """Upstream greedy codes [groups, n] of PROMPT and the seconds `generate` took."""
    import torch

    text, speaker = PROMPT
    ids = torch.from_numpy(task.text_ids(text))[None]
    start = time.perf_counter()
    with torch.no_grad():
        codes, _ = network.generate(
            input_ids=[ids],
            languages=["auto"],
            speakers=[speaker],
            do_sample=False,
            subtalker_dosample=False,
            max_new_tokens=frames + 1,
        )
    return codes[0].numpy().T, time.perf_counter() - start


def prompt_inputs(task: FrameCodes) -> Feeds:
    """The talker's inputs for PROMPT."""
    return task.inputs(Utterance("", PROMPT[0], "auto", PROMPT[1]))


def frames_of(task: FrameCodes, frames: int) -> FrameGeneration:
    """The task's generation settings for exactly `frames` frames (the stop code disabled)."""
    return task.generation.model_copy(update={"max_frames": frames, "stop": False})


def timed_run(model: runtime.Model, task: FrameCodes, frames: int) -> tuple[dict, float]:
    """Greedy codes of PROMPT (the second of two runs) and its seconds."""
    inputs, generation = prompt_inputs(task), frames_of(task, frames)
    task.generate(model, inputs, generation)
    start = time.perf_counter()
    outputs = task.generate(model, inputs, generation)
    return outputs, time.perf_counter() - start


def bytes_per_frame(artifact) -> float:
    """Weight bytes one frame reads: every MatMul weight of the talker's decode step and of the
    code predictor's graph, each as many times as a node reads it (the predictor's steps read
    the same layers once per step)."""
    total = 0.0
    for graph in STEP_GRAPHS:
        proto = onnx.load(str(artifact.file(graph)), load_external_data=False)
        weights = {t.name: t for t in proto.graph.initializer}
        total += sum(
            tensor_bytes(weights[name])
            for node in proto.graph.node
            if node.op_type in MATMULS
            for name in node.input
            if name in weights
        )
    return total


def precision_variants(fp32: Path) -> dict[str, Path]:
    """The FP32 graph at `fp32` and, beside it, its dynamic INT8 (per-channel weights, the
    quantize stage's default) and 4-bit MatMulNBits copies, by speedy's own functions."""
    variants = {
        "fp32": fp32,
        "int8": fp32.with_name("int8.onnx"),
        "int4": fp32.with_name("int4.onnx"),
    }
    quantize_dynamic_int8(fp32, variants["int8"], per_channel=True)
    quantize_matmul_4bits(fp32, variants["int4"])
    return variants


def read_rates(threads: int, work: Path) -> dict[str, float]:
    """GB/s ONNX Runtime reads weights at here: one [1, 4096] x [4096, 16384] MatMul (256 MB of
    float32), and the same weight as dynamic INT8 and as 4-bit MatMulNBits, best of 20 runs."""
    k, n = 4096, 16384
    weight = np.random.default_rng(0).standard_normal((k, n)).astype(np.float32) * 0.02
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "read_rate",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
        [numpy_helper.from_array(weight, "w")],
    )
    fp32 = work / "matmul.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(fp32))
    variants = precision_variants(fp32)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    x = np.random.default_rng(1).standard_normal((1, k)).astype(np.float32)
    rates = {}
    for name, path in variants.items():
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        stored = sum(tensor_bytes(t) for t in onnx.load(str(path)).graph.initializer)
        seconds = []
        for _ in range(20):
            start = time.perf_counter()
            session.run(None, {"x": x})
            seconds.append(time.perf_counter() - start)
        rates[name] = stored / min(seconds) / 1e9
    return rates


def quantized(built: dict, ctx, out: Path) -> dict:
    """Dynamic INT8 and 4-bit weight-only artifacts of the talker and predictor graphs, with the
    quantize stage's quality report against FP32."""
    graphs = ["prefill", "decode", "predictor"]
    result = {}
    for name, precision in {"int8": "dynamic", "int4": "int4"}.items():
        options = {"graphs": graphs, "precision": precision, "no_budget": True}
        start = time.perf_counter()
        artifact = execute(make_stage("quantize", options), built["export"], out / name, ctx, True)
        quality = artifact.manifest.reports["quality"]
        result[name] = {
            "artifact": artifact,
            "build_seconds": time.perf_counter() - start,
            "metrics_vs_fp32": quality["metrics"],
            "examples": quality["examples"],
            "size_mb": artifact.size_bytes / 1e6,
        }
    return result


def first_audio(model, task: FrameCodes, codec, streamer) -> dict:
    """Milliseconds from the request to the first frame's codes, and to its audio (one
    decoder_step call), the second of two runs."""
    inputs = prompt_inputs(task)
    for _ in range(2):
        start = time.perf_counter()
        frame = next(task.frames(model, inputs, task.generation, Frames()))
        codes = time.perf_counter() - start
        streamer.step(codec, frame[:, :, None], streamer.start(codec))
        audio = time.perf_counter() - start
    return {"first_frame_ms": 1000 * codes, "first_audio_ms": 1000 * audio}


def streamed(model, task: FrameCodes, codec, codec_task, streamer, seconds: float) -> dict:
    """A `seconds` utterance (the stop disabled) streamed one frame per decoder_step call as the
    talker makes it: waits between chunks longer than a chunk's audio (underruns), and the
    stream against the whole decode of the same codes."""
    frames = int(seconds * task.s.frames_per_second)
    inputs, generation = prompt_inputs(task), frames_of(task, frames)
    state, pieces, arrivals, codes = streamer.start(codec), [], [], []
    start = time.perf_counter()
    for frame in task.frames(model, inputs, generation, Frames()):
        codes.append(frame)
        audio, state = streamer.step(codec, frame[:, :, None], state)
        pieces.append(audio.reshape(-1))
        arrivals.append(time.perf_counter() - start)
    chunk = 1 / task.s.frames_per_second
    gaps = np.diff(arrivals)
    whole = codec_task.decode(codec, np.stack(codes, 2)).reshape(-1)
    stream = np.concatenate(pieces)
    return {
        "frames": frames,
        "first_chunk_ms": 1000 * arrivals[0],
        "underruns": int((gaps > chunk).sum()),
        "longest_wait_ms": 1000 * float(gaps.max()),
        "stall_seconds": float(np.maximum(gaps - chunk, 0).sum()),
        "rtf": arrivals[-1] / seconds,
        "stream_vs_whole_max_abs": float(np.abs(stream - whole).max()),
    }


def ort_figures(paths: dict[str, Path], codec_path: Path, frames: int, threads: int,
                stream_seconds: float) -> dict:  # fmt: skip
    """Each artifact's speed on one shared pool (set here, before any session): frames per
    second, its parts, its floor's bytes; the FP32 codes; with the codec, first audio, and a
    stream of the fastest quantized precision."""
    pool.share(threads)
    models = {name: runtime.load(path, threads=threads) for name, path in paths.items()}
    task = task_for(models["fp32"].manifest.model)
    assert isinstance(task, FrameCodes)
    runs = {}
    for name, model in models.items():
        outputs, seconds = timed_run(model, task, frames)
        count = outputs["codes"].shape[2]
        runs[name] = {
            "frames": count,
            "ms_per_frame": 1000 * seconds / count,
            "frames_per_s": count / seconds,
            "bytes_per_frame": bytes_per_frame(model.artifact),
            **task.measure(model, prompt_inputs(task)),
        }
        if name == "fp32":
            codes = outputs["codes"][0].tolist()
    speech = None
    if codec_path.is_dir():
        fastest = min(("int8", "int4"), key=lambda n: runs[n]["ms_per_frame"])
        codec = runtime.load(codec_path, threads=threads)
        codec_task = task_for(codec.manifest.model)
        streamer = streamer_of(codec_task, 1 / task.s.frames_per_second)
        speech = {
            "codec": str(codec_path),
            "first_audio": {n: first_audio(m, task, codec, streamer) for n, m in models.items()},
            "stream_30s": {"precision": fastest}
            | streamed(models[fastest], task, codec, codec_task, streamer, stream_seconds),
        }
    return {"runs": runs, "fp32_codes": codes, "speech": speech}


def in_own_process(paths: dict[str, Path], args: argparse.Namespace) -> dict:
    """`ort_figures` in a child process (a process's shared pool is set once, before its first
    session)."""
    named = json.dumps({name: str(path) for name, path in paths.items()})
    command = [sys.executable, __file__, "--ort-child", named, "--codec", str(args.codec),
               "--frames", str(args.frames), "--threads", str(args.threads),
               "--stream-seconds", str(args.stream_seconds)]  # fmt: skip
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--build-dir", type=Path, default=ROOT.parent / "build")
    parser.add_argument("--built", type=Path, help="use the torch and export artifacts there")
    parser.add_argument("--stream-seconds", type=float, default=30.0)
    parser.add_argument(
        "--codec",
        type=Path,
        default=ROOT.parent / "build" / "qwen3_tts_tokenizer_12hz" / "simplify",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "qwen3_tts_cpu.json")
    parser.add_argument("--ort-child", help="(the ONNX Runtime part, in a process of its own)")
    args = parser.parse_args()
    if args.ort_child:
        paths = {n: Path(p) for n, p in json.loads(args.ort_child).items()}
        figures = ort_figures(paths, args.codec, args.frames, args.threads, args.stream_seconds)
        print(json.dumps(figures))
        return

    import torch

    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "held_out.txt").write_text("\n".join(HELD_OUT) + "\n")
        held_out = work / "held_out.txt"
        if args.built:  # artifacts built earlier (speedy run qwen3_tts_0.6b), taken as they are
            built = {s: Artifact.open(args.built / s) for s in ("torch", "export")}
            ctx = context_for(built["export"].manifest.model, held_out, args.threads)
        else:  # built in a process of their own: the export's memory is not this one's
            command = [sys.executable, "-m", "speedy", "run", RECIPE, "--build-dir", args.build_dir]
            subprocess.run(command, check=True)
            built = {s: Artifact.open(args.build_dir / RECIPE / s) for s in ("torch", "export")}
            ctx = context_for(built["export"].manifest.model, held_out, args.threads)
        task = ctx.task
        assert isinstance(task, FrameCodes)
        network = resolve(built["export"].manifest.model).build()
        expected, eager_seconds = upstream_generate(network, task, args.frames)
        del network
        gc.collect()
        variants = quantized(built, ctx, work / "q")
        paths = {"fp32": built["export"].path}
        paths |= {n: v.pop("artifact").path for n, v in variants.items()}
        rates = read_rates(args.threads, work)
        found = in_own_process(paths, args)
    runs, speech = found["runs"], found["speech"]
    for name, run in runs.items():
        run["rtf"] = run["ms_per_frame"] / (1000 / task.s.frames_per_second)
        run["floor_ms_per_frame"] = 1000 * run.pop("bytes_per_frame") / (rates[name] * 1e9)
        run["over_floor"] = run["ms_per_frame"] / run["floor_ms_per_frame"]
    ours = np.array(found["fp32_codes"])[:, : expected.shape[1]]
    runs["fp32"]["identical_to_upstream"] = bool(np.array_equal(ours, expected))
    fastest = min(("int8", "int4"), key=lambda n: runs[n]["rtf"])
    eager_ms = 1000 * eager_seconds / expected.shape[1]
    runs["fp32"]["speed_up_over_eager"] = eager_ms / runs["fp32"]["ms_per_frame"]
    met = {
        "parity_one_prefill_and_frames": runs["fp32"]["identical_to_upstream"],
        "fp32_over_eager": runs["fp32"]["speed_up_over_eager"] >= GOALS["fp32_over_eager_min"],
        "fp32_within_floor": runs["fp32"]["over_floor"] <= GOALS["fp32_within_floor_max"],
        "quantized_real_time": runs[fastest]["rtf"] <= GOALS["quantized_rtf_max"],
        "quantized_within_floor": runs[fastest]["over_floor"]
        <= GOALS["quantized_within_floor_max"],
    }
    result = {
        "benchmark": "Qwen3-TTS 0.6B talker + code predictor (qwen-tts 0.1.1 classes, published "
        f"CustomVoice configuration) on CPU: ONNX Runtime and PyTorch eager, {args.threads} "
        "threads, one run",
        "machine": bench_machine(),
        "weights": "seeded (no checkpoint): quality compares precisions and paths only",
        "prompt": PROMPT[0],
        "upstream_eager": {"frames": int(expected.shape[1]), "ms_per_frame": eager_ms},
        "read_rate_gb_per_s": rates,
        "runs": runs,
        "thread_pool": "one shared by every session (ONNX Runtime's global pool), as speedy synth "
        "and speedy serve run",
        "quantized_vs_fp32": variants,
        "speech": speech,
        "goals": GOALS,
        "met": met,
        "wall_seconds": time.perf_counter() - began,
    }
    write_result(args.out, result, ("met",))


if __name__ == "__main__":
    sys.exit(main())
