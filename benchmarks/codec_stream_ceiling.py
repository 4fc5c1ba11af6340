"""The ceiling of streaming codec_12hz in 80 ms chunks on this CPU: a roofline of one decoder_step
call against the whole decode, with ONNX Runtime at 2 threads.

Issue 25 asks that streaming in 80 ms chunks (one code frame per call) cost at most 1.25x the
whole-utterance decode. A call must read every weight of the decoder but the codebooks (about
169 MB at the published size) for 1,920 samples, where the whole decode reads them once per
utterance. This measures what no implementation that runs the graph op by op can beat:

1. this machine's rates, measured with ONNX Runtime itself: a 1024^3 FP32 MatMul (GFLOP/s) and a
   chain of GEMVs over 256 MB of weights, far beyond the caches (GB/s read);
2. from ONNX Runtime's profile of one decoder_step call (state 20 frames in) and of a 100-frame
   whole decode, each op's FLOPs and weight bytes (a codebook lookup reads only the rows it
   gathers; activations counted free: assumed cached);
3. the roofline bound: the sum over ops of max(FLOPs / GEMM rate, weight bytes / read rate),
   i.e. every op at the best speed this machine reaches and its compute fully hidden under its
   memory traffic or the reverse; against the bar, 1.25x the measured whole decode per frame.

    speedy run codec_12hz            # builds build/codec_12hz/simplify (seeded weights)
    python benchmarks/codec_stream_ceiling.py [--artifact DIR]
"""

import argparse
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from speedy import runtime
from speedy.bench.machine import bench_machine
from speedy.machine import write_result
from speedy.measure import call_seconds
from speedy.specs import Feeds
from speedy.tasks import task_for

ROOT = Path(__file__).resolve().parent
BAR = 1.25  # issue 25: streamed cost at most 1.25x the whole decode
GEMV_LAYERS, WIDTH = 64, 1024  # 64 weights of 1024 x 1024 FP32: 256 MB


def session(model: bytes | str, threads: int, profile: bool = False) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = tempfile.mkdtemp() + "/profile"
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def seconds_per_call(run, calls: int, best: bool = False) -> float:
    """The mean time of `calls` calls after a warm-up, or with `best` the fastest call."""
    times = call_seconds(run, calls, warmup=3)
    return min(times) if best else sum(times) / calls


def matmul_chain(rows: int, layers: int, threads: int) -> tuple[ort.InferenceSession, Feeds]:
    """x [rows, WIDTH] through `layers` MatMuls with distinct WIDTH x WIDTH weights."""
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.standard_normal((WIDTH, WIDTH), np.float32) * 0.03, f"w{i}")
        for i in range(layers)
    ]
    nodes = [
        helper.make_node("MatMul", ["x" if i == 0 else f"y{i - 1}", f"w{i}"], [f"y{i}"])
        for i in range(layers)
    ]
    io = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, [rows, WIDTH])
        for n in ("x", f"y{layers - 1}")
    ]
    graph = helper.make_graph(nodes, "chain", [io[0]], [io[1]], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    feeds = {"x": rng.standard_normal((rows, WIDTH), np.float32)}
    return session(model.SerializeToString(), threads), feeds


def machine_rates(threads: int) -> dict:
    """The best GEMM and weight-read rates ONNX Runtime reaches here (the fastest of many calls:
    the generous choice, so that the roofline stays a lower bound)."""
    gemm, feeds = matmul_chain(WIDTH, 1, threads)
    gemm_s = seconds_per_call(lambda: gemm.run(None, feeds), 30, best=True)
    gemv, feeds = matmul_chain(2, GEMV_LAYERS, threads)
    gemv_s = seconds_per_call(lambda: gemv.run(None, feeds), 30, best=True)
    return {
        "gemm_gflops": 2 * WIDTH**3 / gemm_s / 1e9,
        "read_gbps": GEMV_LAYERS * WIDTH * WIDTH * 4 / gemv_s / 1e9,
    }


def op_costs(path: Path, feeds: Feeds, threads: int) -> list[dict]:
    """FLOPs and weight bytes of every op ONNX Runtime ran on `feeds` (its profile's shapes;
    pre-packed weights are read from the model's initializers)."""
    model = onnx.load(str(path))
    weights = {t.name: list(t.dims) for t in model.graph.initializer if len(t.dims) >= 2}
    nodes = {n.name: n for n in model.graph.node}
    profiled = session(str(path), threads, profile=True)
    profiled.run(None, feeds)
    costs = []
    for event in json.loads(Path(profiled.end_profiling()).read_text()):
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        args, node = event["args"], nodes.get(event["name"].removesuffix("_kernel_time"))
        inputs = [next(iter(s.values())) for s in args.get("input_type_shape", [])]
        outputs = [next(iter(s.values())) for s in args.get("output_type_shape", [])]
        weight = next((weights[i] for i in (node.input if node else []) if i in weights), None)
        costs.append({"op": args["op_name"], **_cost(args["op_name"], inputs, outputs, weight)})
    return costs


def _cost(op: str, inputs: list, outputs: list, weight: list | None) -> dict:
    flops = 0
    if op in ("MatMul", "FusedMatMul", "Gemm"):
        if weight:
            flops = 2 * math.prod(inputs[0][:-1]) * weight[0] * weight[1]
        elif len(inputs) == 2:  # activations times activations (attention)
            flops = 2 * math.prod(inputs[0]) * inputs[1][-1]
    elif op in ("Conv", "FusedConv") and weight:
        flops = 2 * math.prod(weight) * outputs[0][0] * outputs[0][-1]
    elif op == "ConvTranspose" and weight:
        flops = 2 * math.prod(weight) * inputs[0][0] * inputs[0][-1]
    if op == "Gather" and weight:  # a table lookup reads the rows it gathers, not the table
        return {"flops": 0, "weight_bytes": 4 * math.prod(outputs[0])}
    return {"flops": flops, "weight_bytes": 4 * math.prod(weight) if weight else 0}


def roofline(costs: list[dict], rates: dict, frames: int) -> dict:
    peak, read = rates["gemm_gflops"] * 1e9, rates["read_gbps"] * 1e9
    bound = sum(max(c["flops"] / peak, c["weight_bytes"] / read) for c in costs)
    return {
        "gflop_per_frame": sum(c["flops"] for c in costs) / frames / 1e9,
        "weight_mb_per_frame": sum(c["weight_bytes"] for c in costs) / frames / 1e6,
        "roofline_ms_per_frame": bound * 1e3 / frames,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, default=ROOT.parent / "build/codec_12hz/simplify")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--whole-frames", type=int, default=100)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "results/codec_12hz_stream_ceiling_cpu.json"
    )
    args = parser.parse_args()

    model = runtime.load(args.artifact, threads=args.threads)
    task = task_for(model.manifest.model)
    codes = np.random.default_rng(0).integers(0, 2048, (1, 16, args.whole_frames), np.int64)
    streamer = task.streamer(0.08)
    state = streamer.start(model)
    for frame in range(20):
        _, state = streamer.step(model, codes[..., frame : frame + 1], state)
    cases = {
        "step_80ms": ("decoder_step", {"codes": codes[..., 20:21], **state.tensors}, 1),
        "whole": ("decoder", {"codes": codes}, args.whole_frames),
    }
    rates = machine_rates(args.threads)
    figures = {}
    for case, (graph, feeds, frames) in cases.items():
        path = model.artifact.file(graph)
        plain = session(str(path), args.threads)
        wall = seconds_per_call(lambda s=plain, f=feeds: s.run(None, f), 10)
        figures[case] = {
            "wall_ms_per_frame": wall * 1e3 / frames,
            **roofline(op_costs(path, feeds, args.threads), rates, frames),
        }
    allowed = BAR * figures["whole"]["wall_ms_per_frame"]
    floor = figures["step_80ms"]["roofline_ms_per_frame"]
    write_result(
        args.out,
        {
            "benchmark": "codec_12hz 80 ms streaming: roofline of one decoder_step call against "
            f"the whole decode, ONNX Runtime at {args.threads} threads",
            "machine": bench_machine(),
            "artifact": str(args.artifact),
            "rates": rates,
            "whole_frames": args.whole_frames,
            **figures,
            "bar_step_ms": allowed,
            "step_roofline_over_bar": floor / allowed,
            "reachable": floor <= allowed,
        },
        ("rates", "step_80ms", "whole", "bar_step_ms", "reachable"),
    )


if __name__ == "__main__":
    main()
