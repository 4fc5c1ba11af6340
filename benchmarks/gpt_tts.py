"""GPT-TTS (IndexTTS2-style, seeded weights) decoding on the CPU, the tiny and a mid shape, one run.

For each shape: the recipe's torch and ONNX (prefill + decode) artifacts and the ONNX one with
dynamic INT8 MatMuls (`speedy quantize --precision dynamic`). Then, all in one run with the
variants taking turns:

1. the time of one decode step at cache lengths 50, 500 and 1,500 (a random cache, the runtime's
   slot buffers: the graph reads them in place) for PyTorch eager, ORT FP32 and ORT INT8, and the
   no-cache baseline (PyTorch recomputing the whole sequence for each code) at the same lengths;
2. the floor of a memory-bound step: the bytes of the weights one step reads (the GPT stack, its
   norms and the code head; the tables give one row each) over the best read bandwidth ONNX
   Runtime reaches here (summing 512+ MB, and a GEMV over as many bytes, same threads): a weight
   set that fits the caches (the tiny shape's) can run faster than this floor;
3. 200 greedy codes of FP32 and INT8 from the same prompt: agreement, first divergence, KL under
   teacher forcing, distinct codes.

Writes benchmarks/results/gpt_tts_cpu.json with machine info.

    python benchmarks/gpt_tts.py [--threads 2] [--rounds 5] [--shapes tiny mid]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import yaml
from onnx import TensorProto, helper, numpy_helper

from speedy import runtime
from speedy.bench.machine import bench_machine
from speedy.families.network import build_network
from speedy.machine import write_result
from speedy.pipeline import make_stage, run_recipe
from speedy.recipe import BUILTIN, load_recipe
from speedy.runtime import Model
from speedy.stages.base import reuse_or_execute
from speedy.tasks import task_for
from speedy.tasks.speech_codes import CONTEXTS, Generation, SpeechCodes

ROOT = Path(__file__).resolve().parent
SHAPES = {
    "tiny": {"layers": 4, "d_model": 256, "heads": 4},
    "mid": {"layers": 12, "d_model": 768, "heads": 12},
}
TARGETS = {"ratio_1500_over_50_max": 1.5, "tiny_ort_over_eager_min": 1.5}
TARGETS |= {"mid_fp32_over_floor_max": 1.5, "mid_int8_speedup_min": 1.5}


def recipe_file(shape: str, directory: Path) -> Path:
    """The IndexTTS2 recipe at another shape (parity at short prompts, to build quickly)."""
    raw = yaml.safe_load((BUILTIN / "gpt_tts_indextts2.yaml").read_text())
    raw["name"] = f"gpt_tts_{shape}"
    raw["network"] |= SHAPES[shape]
    raw["data"] = str((ROOT.parent / "calibration" / "eval_texts_zh_en.txt").resolve())
    raw["parity"]["sizes"] = [{"text": 7}, {"text": 23}]
    path = directory / f"gpt_tts_{shape}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def build(shape: str, build_dir: Path, threads: int) -> dict[str, Path]:
    """torch, export and dynamic-INT8 artifacts of one shape (reused when unchanged)."""
    with tempfile.TemporaryDirectory() as tmp:
        recipe = load_recipe(str(recipe_file(shape, Path(tmp))))
        outcomes, ctx = run_recipe(recipe, build_dir, threads=threads)
    found = {o.stage: o.artifact for o in outcomes}
    stage = make_stage("quantize", {"precision": "dynamic", "no_budget": True})  # timing only
    int8, _ = reuse_or_execute(stage, found["export"], build_dir / recipe.name / "int8", ctx)
    return {"torch": found["torch"].path, "fp32": found["export"].path, "int8": int8.path}


def step_times(models: dict[str, Model], task: SpeechCodes, rounds: int) -> dict:
    """Median milliseconds of one decode step per variant and cache length, in turns."""
    times: dict[str, dict[int, list[float]]] = {n: {c: [] for c in CONTEXTS} for n in models}
    for _ in range(rounds):
        for length in CONTEXTS:
            for name, model in models.items():
                times[name][length].append(1000 * task.step_seconds(model, length, repeats=3))
    return {n: {c: statistics.median(v) for c, v in by.items()} for n, by in times.items()}


def no_cache_times(network: torch.nn.Module, task: SpeechCodes, rounds: int) -> dict[int, float]:
    """Milliseconds to produce one code without a cache: the whole sequence (a 20-token prompt
    and the codes so far) through the network, at each total length."""
    prompt = task._prompt([np.arange(2, 22)], [0])
    args = [torch.from_numpy(prompt[k]) for k in ("speaker_latents", "emotion", "text_ids")]
    args.append(torch.from_numpy(prompt["attention_mask"]))
    found = {}
    for length in CONTEXTS:
        codes = torch.zeros(1, max(length - task.s.cond_latents - 25, 1), dtype=torch.long)
        with torch.inference_mode():
            network(*args, codes)
            seconds = []
            for _ in range(rounds):
                start = time.perf_counter()
                network(*args, codes)
                seconds.append(time.perf_counter() - start)
        found[length] = 1000 * statistics.median(seconds)
    return found


def step_weight_bytes(network: torch.nn.Module) -> int:
    """Bytes of the weights one decode step reads: the GPT stack and norms and the code head
    (the embedding tables contribute one row each)."""
    parts = [network.gpt, network.final_norm, network.mel_head]
    return sum(p.numel() * p.element_size() for part in parts for p in part.parameters())


def read_bandwidth(megabytes: int, threads: int, rounds: int) -> dict[str, float]:
    """GB/s this machine reaches reading float32 data: ONNX Runtime summing a tensor of
    `megabytes` with `threads` threads, and a [1, 768] x [768, N] product over a weight of that
    size (the memory-bound shape of a decode step)."""
    k = 768
    n = megabytes * 2**20 // (4 * k)
    data = np.random.default_rng(0).random((k, n), np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.log_severity_level = threads, 3

    def timed(graph: onnx.GraphProto, feeds: dict) -> float:
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        session = ort.InferenceSession(model.SerializeToString(), options)
        session.run(None, feeds)
        seconds = []
        for _ in range(rounds * 3):
            start = time.perf_counter()
            session.run(None, feeds)
            seconds.append(time.perf_counter() - start)
        return data.nbytes / statistics.median(seconds) / 1e9

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [k, n])
    total = helper.make_tensor_value_info("y", TensorProto.FLOAT, [])
    reduce = helper.make_graph(
        [helper.make_node("ReduceSum", ["x"], ["y"], keepdims=0)], "sum", [x], [total]
    )
    row = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])
    gemv = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "gemv",
        [row],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
        [numpy_helper.from_array(data, "w")],
    )
    return {
        "reduce_sum": timed(reduce, {"x": data}),
        "gemv": timed(gemv, {"x": np.ones((1, k), np.float32)}),
    }


def codes_of(task: SpeechCodes, models: dict[str, Model], prompt: dict) -> dict:
    """200 greedy codes of FP32 and INT8 from one prompt, compared."""
    generation = Generation(max_codes=200)
    fp32 = task.generate(models["fp32"], prompt, generation)
    figures = task.evaluate(fp32, models["int8"], prompt, list(task.metrics))
    eager = task.generate(models["torch"], prompt, generation)
    return {
        "int8_vs_fp32": figures,
        "fp32_equals_torch": bool(np.array_equal(fp32["codes"], eager["codes"])),
        "distinct_codes_fp32": len(np.unique(fp32["codes"])),
    }


def shape_figures(shape: str, build_dir: Path, threads: int, rounds: int) -> dict:
    paths = build(shape, build_dir, threads)
    models = {name: runtime.load(path, threads=threads) for name, path in paths.items()}
    task = task_for(models["fp32"].manifest.model)
    assert isinstance(task, SpeechCodes)
    torch.set_num_threads(threads)
    network = build_network(models["torch"].manifest.model)
    steps = step_times(models, task, rounds)
    no_cache = no_cache_times(network, task, rounds)
    weight_bytes = step_weight_bytes(network)
    bandwidth = read_bandwidth(max(weight_bytes >> 20, 512), threads, rounds)
    floor_ms = 1000 * weight_bytes / (max(bandwidth.values()) * 1e9)
    prompt = task.inputs(task.read_data(task.default_data, None)[3])
    return {
        "parameters": sum(p.numel() for p in network.parameters()),
        "decode_ms": steps,
        "no_cache_ms": no_cache,
        "ratio_1500_over_50": {n: s[1500] / s[50] for n, s in steps.items()},
        "ort_over_eager_at_50": steps["torch"][50] / steps["fp32"][50],
        "int8_speedup_at_50": steps["fp32"][50] / steps["int8"][50],
        "step_weight_mb": weight_bytes / 1e6,
        "read_gb_per_s": bandwidth,
        "floor_ms": floor_ms,
        "fp32_over_floor_at_50": steps["fp32"][50] / floor_ms,
        "int8_over_floor_at_50": steps["int8"][50] / floor_ms,
        "sizes_mb": {n: sum(f.stat().st_size for f in p.iterdir()) / 1e6 for n, p in paths.items()},
        "codes": codes_of(task, models, prompt),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--build-dir", type=Path, default=ROOT.parent / "build")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "gpt_tts_cpu.json")
    args = parser.parse_args()
    shapes = {s: shape_figures(s, args.build_dir, args.threads, args.rounds) for s in args.shapes}
    result = {
        "benchmark": "GPT-TTS decoding on the CPU: per-code time by cache length, the "
        "memory-bound floor, dynamic INT8 (seeded weights)",
        "threads": args.threads,
        "rounds": args.rounds,
        "contexts": list(CONTEXTS),
        "targets": TARGETS,
        "shapes": shapes,
        "machine": bench_machine(),
    }
    write_result(args.out, result, ["shapes"])


if __name__ == "__main__":
    main()
