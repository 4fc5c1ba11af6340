"""HiFi-GAN V1 (real LJSpeech checkpoint) on real speech: PyTorch eager vs ONNX Runtime FP32.

Builds (or reuses) the recipe's artifacts plus its `compile` stage (ONNX Runtime on CPU with
block FFT convolutions), then on the shared LJSpeech clips measures, in one process with
interleaved repeats at 2 threads, the RTF of each artifact (the median, and every repeat to
show the spread) and the ratio to PyTorch eager; and the PESQ-WB of PyTorch resynthesis
against the recordings (front-end check).
It also measures how fast this machine can go at all: the model's FLOPs per audio second
(torch's FlopCounterMode) against the rate of a large single-precision matrix product in ONNX
Runtime and PyTorch, the best any direct FP32 convolution of this model can expect (the FFT
convolutions do fewer multiply-adds, so their figure is an effective rate).
Writes benchmarks/results/hifigan_v1_cpu.json.

    python benchmarks/hifigan_v1.py [--data DIR] [--repeats N]
"""

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnx import TensorProto, helper
from torch.utils.flop_counter import FlopCounterMode

from speedy import runtime
from speedy.audio.io import list_audio, read_audio
from speedy.families.network import build_network
from speedy.machine import machine_info, write_result
from speedy.measure import call_seconds, medians, rtf_samples
from speedy.model_spec import ModelSpec
from speedy.pipeline import context_for, run_recipe
from speedy.quality import pesq_wb
from speedy.recipe import DEFAULT_DATA, load_recipe
from speedy.tasks.vocoder import Vocoder

ROOT = Path(__file__).resolve().parent
SHARED_CLIPS = ROOT.parent.parent / "shared" / "data" / "ljspeech" / "wavs"
TARGET_RATIO = 0.55  # ORT FP32 RTF <= 0.55 x PyTorch eager RTF (issue 2)
TARGET_PESQ = 3.6
GEMM_SIZE = 2048  # square SGEMM large enough to run at the library's best rate


def gflop_per_audio_second(spec: ModelSpec, frames: int = 256) -> float:
    """The network's FLOPs (2 per multiply-add) per second of audio, counted by PyTorch."""
    mel = torch.zeros(1, spec.audio.n_mels, frames)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        build_network(spec)(mel)
    frames_per_second = spec.audio.sample_rate / spec.audio.hop_length
    return counter.get_total_flops() / frames * frames_per_second / 1e9


def _best_seconds(run: Callable[[], object], repeats: int = 5) -> float:
    """The fastest of `repeats` timed calls, after one untimed call."""
    return min(call_seconds(run, repeats))


def sgemm_gflops(threads: int) -> dict[str, float]:
    """GFLOP/s of a large FP32 matrix product in ONNX Runtime (MLAS) and PyTorch."""
    n = GEMM_SIZE
    a, b = (np.random.default_rng(i).standard_normal((n, n), np.float32) for i in range(2))
    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "sgemm",
        [value("a", TensorProto.FLOAT, [n, n]), value("b", TensorProto.FLOAT, [n, n])],
        [value("c", TensorProto.FLOAT, [n, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    torch.set_num_threads(threads)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    flop = 2 * n**3 / 1e9
    return {
        "onnxruntime": flop / _best_seconds(lambda: session.run(None, {"a": a, "b": b})),
        "torch": flop / _best_seconds(lambda: ta @ tb),
    }


def compute_ceiling(spec: ModelSpec, rtf: dict[str, float], threads: int) -> dict:
    """Achieved GFLOP/s per artifact, and the ORT/eager ratio if ORT ran every conv at the rate
    of its own large SGEMM: a floor that direct FP32 convolutions cannot be expected to beat."""
    gflop, gemm = gflop_per_audio_second(spec), sgemm_gflops(threads)
    return {
        "gflop_per_audio_second": gflop,
        "achieved_gflops": {name: gflop / value for name, value in rtf.items()},
        "sgemm_gflops": gemm,
        "sgemm_size": GEMM_SIZE,
        "ort_ratio_at_sgemm_rate": gflop / gemm["onnxruntime"] / rtf["torch"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=SHARED_CLIPS if SHARED_CLIPS.is_dir() else DEFAULT_DATA
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--build-dir", type=Path, default=ROOT.parent / "build")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "hifigan_v1_cpu.json")
    args = parser.parse_args()

    recipe = load_recipe("hifigan_v1")
    recipe = recipe.model_copy(update={"stages": [*recipe.stages, "compile"]})
    outcomes, _ = run_recipe(recipe, args.build_dir, threads=args.threads)
    artifacts = {o.stage: o.artifact for o in outcomes}
    ctx = context_for(recipe.model_spec(), args.data, args.threads)
    models = {name: runtime.load(a.path, threads=args.threads) for name, a in artifacts.items()}
    samples = rtf_samples(models, ctx.task, ctx.examples, repeats=args.repeats)
    rtf = medians(samples)

    task, torch_model = ctx.task, models["torch"]
    assert isinstance(task, Vocoder)
    pesq = {}
    for clip in list_audio(args.data):
        recording = read_audio(clip, ctx.spec.audio.sample_rate)
        outputs = task.run(torch_model, task.inputs(task.features(recording)))
        pesq[clip.name] = pesq_wb(recording, task.waveforms(outputs)[0], 22050)

    ratio = {name: value / rtf["torch"] for name, value in rtf.items()}
    fastest_ort = min((name for name in ratio if name != "torch"), key=ratio.__getitem__)
    ceiling = compute_ceiling(ctx.spec, rtf, args.threads)
    result = {
        "benchmark": "hifigan_v1 PyTorch eager vs ONNX Runtime FP32, and front-end PESQ",
        "machine": machine_info(),
        "data": {
            "dir": str(args.data),
            "clips": len(ctx.examples),
            "audio_seconds": sum(
                m.shape[-1] * task.audio.hop_length / task.audio.sample_rate for m in ctx.examples
            ),
        },
        "threads": args.threads,
        "repeats": args.repeats,
        "rtf": rtf,
        "rtf_per_repeat": samples,
        "rtf_ratio_to_torch": ratio,
        "compute_ceiling": ceiling,
        "pesq_wb_resynthesis_torch": {
            "per_clip": pesq,
            "mean": float(np.mean(list(pesq.values()))),
        },
        "targets": {
            "ort_rtf_ratio_max": TARGET_RATIO,
            "fastest_ort_artifact": fastest_ort,
            "ort_rtf_ratio_met": ratio[fastest_ort] <= TARGET_RATIO,
            "pesq_mean_min": TARGET_PESQ,
            "pesq_met": float(np.mean(list(pesq.values()))) >= TARGET_PESQ,
        },
    }
    print(f"mean PESQ-WB {result['pesq_wb_resynthesis_torch']['mean']:.3f}")
    write_result(args.out, result, ("rtf", "rtf_ratio_to_torch", "compute_ceiling", "targets"))


if __name__ == "__main__":
    main()
