"""The kernel ceiling of a Qwen3-TTS frame on this CPU: every weight MatMul one frame runs (the
talker's decode step and the code predictor's 15 steps, at their own shapes, one row each) and
nothing else, in one ONNX Runtime graph, at FP32, dynamic INT8 and 4-bit MatMulNBits (quantized
by speedy's own functions, as the quantize stage does). No frame of that precision can take less
with ONNX Runtime's kernels here; the issue's "within 2x of the floor" and "real time" goals are
weighed against it. Reads the FP32 artifact `speedy run qwen3_tts_0.6b` built.

    python benchmarks/qwen3_tts_kernels.py [--built build/qwen3_tts_0.6b] [--threads T]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper
from qwen3_tts import precision_variants

from speedy.artifact import Artifact
from speedy.bench.machine import bench_machine
from speedy.machine import write_result
from speedy.onnx_io import load_onnx, save_onnx, tensor_bytes

ROOT = Path(__file__).resolve().parent
FRAME_GRAPHS = ("decode", "predictor")  # what one frame runs after the prompt


def frame_matmuls(artifact: Artifact) -> onnx.ModelProto:
    """One graph of every MatMul of FRAME_GRAPHS that reads a weight, each fed a [1, K] input of
    its own and giving an output of its own (so none waits on another's result)."""
    nodes, inputs, outputs, weights = [], [], [], {}
    for graph in FRAME_GRAPHS:
        proto = load_onnx(artifact.file(graph))
        stored = {t.name: t for t in proto.graph.initializer}
        for node in proto.graph.node:
            weight = stored.get(node.input[1]) if node.op_type == "MatMul" else None
            if weight is None or len(weight.dims) != 2:
                continue
            name, key = f"{graph}_{len(nodes)}", f"{graph}/{weight.name}"
            if key not in weights:  # the predictor's steps read the same weights
                weights[key] = onnx.TensorProto()
                weights[key].CopyFrom(weight)
                weights[key].name = key
            k, n = weight.dims
            nodes.append(helper.make_node("MatMul", [f"{name}_x", key], [f"{name}_y"]))
            inputs.append(helper.make_tensor_value_info(f"{name}_x", TensorProto.FLOAT, [1, k]))
            outputs.append(helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT, [1, n]))
    graph = helper.make_graph(nodes, "frame_matmuls", inputs, outputs, list(weights.values()))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def timed_rounds(paths: dict[str, Path], threads: int, rounds: int, runs: int) -> dict:
    """Per graph, the median seconds of `runs` runs in each of `rounds` rounds that take the
    graphs in turn (machine noise then falls on all of them alike), after two warm-up runs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    sessions = {
        name: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for name, path in paths.items()
    }
    rng = np.random.default_rng(0)
    feeds = {
        i.name: rng.standard_normal(i.shape).astype(np.float32)
        for i in sessions["fp32"].get_inputs()
    }
    medians: dict[str, list[float]] = {name: [] for name in paths}
    for session in sessions.values():
        for _ in range(2):
            session.run(None, feeds)
    for _ in range(rounds):
        for name, session in sessions.items():
            seconds = []
            for _ in range(runs):
                start = time.perf_counter()
                session.run(None, feeds)
                seconds.append(time.perf_counter() - start)
            medians[name].append(float(np.median(seconds)))
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--built", type=Path, default=ROOT.parent / "build" / "qwen3_tts_0.6b")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "qwen3_tts_kernels_cpu.json")
    args = parser.parse_args()
    artifact = Artifact.open(args.built / "export")
    frame_ms = 1000 / 12.5
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        save_onnx(frame_matmuls(artifact), fp32)
        variants = precision_variants(fp32)
        medians = timed_rounds(variants, args.threads, args.rounds, args.runs)
        precisions = {}
        for name, path in variants.items():
            proto = onnx.load(str(path), load_external_data=False)
            stored = {t.name: t for t in proto.graph.initializer}
            read = sum(
                tensor_bytes(stored[i]) for n in proto.graph.node for i in n.input if i in stored
            )
            ms = 1000 * float(np.median(medians[name]))
            precisions[name] = {
                "nodes": len(proto.graph.node),  # a dynamic INT8 MatMul is 5 before ORT fuses
                "weight_bytes_read": read,
                "ms_per_frame": ms,
                "ms_per_frame_rounds": [1000 * m for m in medians[name]],
                "read_gb_per_s": read / ms / 1e6,
                "rtf_at_this_ceiling": ms / frame_ms,
            }
    result = {
        "benchmark": "Qwen3-TTS 0.6B: one frame's weight MatMuls alone (talker decode step + 15 "
        f"code predictor steps, one row each) in ONNX Runtime, {args.threads} threads, the median "
        f"of {args.rounds} rounds' medians of {args.runs} runs, the precisions taking turns",
        "machine": bench_machine(),
        "weights": "seeded (no checkpoint); the shapes are the published 0.6B configuration's",
        "artifact": str(args.built / "export"),
        "matmuls_per_frame": precisions["fp32"]["nodes"],
        "precisions": precisions,
    }
    write_result(args.out, result, ("precisions",))


if __name__ == "__main__":
    sys.exit(main())
