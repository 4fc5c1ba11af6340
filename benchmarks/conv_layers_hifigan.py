"""HiFi-GAN V1 (real LJSpeech checkpoint), conv by conv: PyTorch eager vs ONNX Runtime FP32.

Where issue 2's ORT/eager ratio comes from. The torch artifact of the recipe runs once on the
first frames of a real mel (the longest shared LJSpeech clip), and each Conv1d's real input is
kept. Every conv is then timed three ways at 2 threads (median after a warm-up): PyTorch eager
(the layer itself), ONNX Runtime's Conv (a one-node model with the same weights), and ONNX
Runtime block FFT convolution (the rewrite of `speedy compile --fft-conv`, its width and kernel
thresholds lowered so that every conv it can express is tried). The whole model is timed too
(torch artifact vs the recipe's compile stage), so the time outside the convs shows. Totals
per upsampling stage, the best per-layer choice between the two ORT algorithms, and the target's
budget: how much faster the layers the recipe rewrites would have to run for ORT to reach
0.55 x eager, with everything else as measured. ONNX Runtime's profiler splits each FFT conv's
time into channel mixing, DFTs and copies, which gives the whole-model ratio if parts of it were
free (`target_budget.ratio_if`): the copies of the recipe's FFT layers; their copies and DFTs;
the copies and DFTs of every conv, each taking the faster algorithm.
Writes benchmarks/results/conv_layers_hifigan_cpu.json.

    python benchmarks/conv_layers_hifigan.py [--frames N] [--repeats N]
"""

import argparse
import json
import statistics
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

from speedy import runtime
from speedy.backends.pytorch.session import TorchSession
from speedy.compile.fft_conv import FftConvOptions, fft_convolutions
from speedy.machine import machine_info, write_result
from speedy.measure import call_seconds
from speedy.pipeline import context_for, run_recipe
from speedy.recipe import DEFAULT_DATA, load_recipe

ROOT = Path(__file__).resolve().parent
SHARED_CLIPS = ROOT.parent.parent / "shared" / "data" / "ljspeech" / "wavs"
TARGET_RATIO = 0.55  # issue 2: ORT FP32 RTF <= 0.55 x PyTorch eager RTF
RECIPE_FFT = FftConvOptions()  # what the recipe's compile stage rewrites
ANY_FFT = FftConvOptions(min_channels=1, min_kernel=3)  # every conv the rewrite can express


def median_seconds(calls: Mapping[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each call over `repeats`, after one untimed call. One call at a time,
    not in turns: ONNX Runtime's threads spin for a while after a run, and would take the cores
    from a short PyTorch call that followed."""
    return {name: statistics.median(call_seconds(call, repeats)) for name, call in calls.items()}


def conv_model(conv: torch.nn.Conv1d) -> onnx.ModelProto:
    """A one-node ONNX model computing `conv` on [1, C, T]."""
    pad = conv.padding[0]
    node = helper.make_node(
        "Conv",
        ["x", "w", "b"],
        ["y"],
        name="conv",
        dilations=list(conv.dilation),
        pads=[pad, pad],
        strides=list(conv.stride),
    )
    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        [node],
        "conv",
        [value("x", TensorProto.FLOAT, [1, conv.in_channels, "T"])],
        [value("y", TensorProto.FLOAT, [1, conv.out_channels, "T"])],
        [
            numpy_helper.from_array(conv.weight.detach().numpy(), "w"),
            numpy_helper.from_array(conv.bias.detach().numpy(), "b"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


def ort_session(
    model: onnx.ModelProto, threads: int, profile_prefix: str | None = None
) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3
    if profile_prefix:
        options.enable_profiling, options.profile_file_prefix = True, profile_prefix
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def fft_time_shares(model: onnx.ModelProto, x: np.ndarray, threads: int) -> dict[str, float]:
    """Where an FFT-rewritten conv spends its kernel time, as shares, from ONNX Runtime's profiler
    (three runs after an untimed one): the per-bin channel mixing, the two DFTs, and the rest
    (framing copies, transposes, trimming, bias)."""
    with tempfile.TemporaryDirectory() as tmp:
        session = ort_session(model, threads, f"{tmp}/profile")
        for _ in range(4):
            session.run(None, {"x": x})
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = [e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"]
    spent: Counter[str] = Counter()
    kernels = [
        e
        for e in events
        if e.get("cat") == "Node"
        and e["name"].endswith("_kernel_time")
        and e["ts"] >= runs[1]["ts"]
    ]
    for e in kernels:
        if e["name"].endswith("/mixed_kernel_time"):  # the rewrite names its mixing MatMul so
            spent["mixing"] += e["dur"]
        elif e["args"]["op_name"] in ("MatMul", "FusedMatMul"):
            spent["dfts"] += e["dur"]
        else:
            spent["copies"] += e["dur"]
    total = sum(spent.values())
    return {part: spent[part] / total for part in ("mixing", "dfts", "copies")}


def conv_inputs(module: torch.nn.Module, mel: np.ndarray) -> dict[str, np.ndarray]:
    """Each Conv1d's input during one run of `module` on `mel`, by module name."""
    captured: dict[str, np.ndarray] = {}

    def keeper(name: str) -> Callable[..., None]:
        def keep(_: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            captured.setdefault(name, args[0].numpy().copy())

        return keep

    hooks = [
        layer.register_forward_pre_hook(keeper(name))
        for name, layer in module.named_modules()
        if isinstance(layer, torch.nn.Conv1d)
    ]
    with torch.inference_mode():
        module(torch.from_numpy(mel))
    for hook in hooks:
        hook.remove()
    return captured


def time_layer(conv: torch.nn.Conv1d, x: np.ndarray, threads: int, repeats: int) -> dict:
    """The conv's shape and its median seconds in torch, ORT Conv and (where it applies) ORT FFT."""
    model = conv_model(conv)
    direct = ort_session(model, threads)
    calls: dict[str, Callable[[], object]] = {
        "torch": lambda: conv(torch.from_numpy(x)),
        "ort": lambda: direct.run(None, {"x": x}),
    }
    fft_model, rewritten = fft_convolutions(model, ANY_FFT)
    if rewritten:
        fft = ort_session(fft_model, threads)
        calls["ort_fft"] = lambda: fft.run(None, {"x": x})
    with torch.inference_mode():
        seconds = median_seconds(calls, repeats)
    timed = {
        "channels": [conv.in_channels, conv.out_channels],
        "kernel": conv.kernel_size[0],
        "dilation": conv.dilation[0],
        "length": x.shape[-1],
        "in_recipe_fft": bool(fft_convolutions(model, RECIPE_FFT)[1]),
        "seconds": seconds,
    }
    if rewritten:
        timed["ort_fft_shares"] = fft_time_shares(fft_model, x, threads)
    return timed


def totals(layers: list[dict]) -> dict[str, float]:
    """Summed seconds: torch, ORT Conv, the recipe's compile stage (FFT where it rewrites), and
    the faster of the two ORT algorithms per layer."""

    def ort_seconds(layer: dict, fft: bool) -> float:
        return layer["seconds"]["ort_fft" if fft else "ort"]

    return {
        "torch": sum(layer["seconds"]["torch"] for layer in layers),
        "ort": sum(ort_seconds(layer, False) for layer in layers),
        "ort_recipe_fft": sum(ort_seconds(layer, layer["in_recipe_fft"]) for layer in layers),
        "ort_best_per_layer": sum(
            min(ort_seconds(layer, False), layer["seconds"].get("ort_fft", np.inf))
            for layer in layers
        ),
    }


def fft_part_seconds(layer: dict, parts: tuple[str, ...]) -> float:
    """The layer's ORT FFT seconds, counting only the named parts of its time."""
    return layer["seconds"]["ort_fft"] * sum(layer["ort_fft_shares"][part] for part in parts)


def stage_of(layer: str, blocks_per_stage: int) -> str:
    """The upsampling stage of a resblock conv (`resblocks.<i>...`), or the layer's own name."""
    parts = layer.split(".")
    return f"stage{int(parts[1]) // blocks_per_stage}" if parts[0] == "resblocks" else parts[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=SHARED_CLIPS if SHARED_CLIPS.is_dir() else DEFAULT_DATA
    )
    parser.add_argument("--frames", type=int, default=600)  # the shared clips average 572
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--build-dir", type=Path, default=ROOT.parent / "build")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "results" / "conv_layers_hifigan_cpu.json"
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    recipe = load_recipe("hifigan_v1")
    recipe = recipe.model_copy(update={"stages": [*recipe.stages, "compile"]})
    outcomes, _ = run_recipe(recipe, args.build_dir, threads=args.threads)
    artifacts = {o.stage: o.artifact for o in outcomes}
    ctx = context_for(recipe.model_spec(), args.data, args.threads)
    longest = max(ctx.examples, key=lambda f: f.shape[-1])
    if longest.shape[-1] < args.frames:
        raise SystemExit(f"the longest clip has {longest.shape[-1]} frames; pass --frames lower")
    mel = np.ascontiguousarray(longest[None, :, : args.frames], dtype=np.float32)

    models = {
        name: runtime.load(artifacts[stage].path, threads=args.threads)
        for name, stage in (("torch", "torch"), ("ort_recipe_fft", "compile"))
    }
    feeds = {models["torch"].inputs[0].name: mel}
    whole = median_seconds({n: lambda m=m: m.run(feeds) for n, m in models.items()}, args.repeats)

    torch_session = models["torch"]["model"]
    assert isinstance(torch_session, TorchSession)
    module = torch_session.module
    layers = []
    for name, x in conv_inputs(module, mel).items():
        timed = time_layer(module.get_submodule(name), x, args.threads, args.repeats)
        layers.append({"layer": name, "stage": stage_of(name, module.kernels_per_stage), **timed})
        print(f"{name}: {json.dumps(timed['seconds'])}", flush=True)

    stages = dict.fromkeys(layer["stage"] for layer in layers)  # in model order
    per_stage = {s: totals([lay for lay in layers if lay["stage"] == s]) for s in stages}
    convs = totals(layers)
    outside = {
        "torch": whole["torch"] - convs["torch"],
        "ort_recipe_fft": whole["ort_recipe_fft"] - convs["ort_recipe_fft"],
    }
    best_whole = convs["ort_best_per_layer"] + outside["ort_recipe_fft"]
    recipe_layers = [layer for layer in layers if layer["in_recipe_fft"]]
    fft_layers = totals(recipe_layers)
    rest = whole["ort_recipe_fft"] - fft_layers["ort_recipe_fft"]
    left = TARGET_RATIO * whole["torch"] - rest
    mixing_only = sum(
        min(layer["seconds"]["ort"], fft_part_seconds(layer, ("mixing",)))
        if "ort_fft" in layer["seconds"]
        else layer["seconds"]["ort"]
        for layer in layers
    )
    ratio_if = {
        "recipe_fft_copies_free": rest
        + sum(fft_part_seconds(layer, ("mixing", "dfts")) for layer in recipe_layers),
        "recipe_fft_copies_and_dfts_free": rest
        + sum(fft_part_seconds(layer, ("mixing",)) for layer in recipe_layers),
        "every_conv_fft_copies_and_dfts_free": outside["ort_recipe_fft"] + mixing_only,
    }
    result = {
        "benchmark": "hifigan_v1 conv by conv: PyTorch eager vs ONNX Runtime Conv vs FFT conv",
        "machine": machine_info(),
        "data": {"clip_frames": int(longest.shape[-1]), "frames": args.frames},
        "threads": args.threads,
        "repeats": args.repeats,
        "whole_model_seconds": whole,
        "conv_seconds": convs,
        "conv_ratio_to_torch": {name: value / convs["torch"] for name, value in convs.items()},
        "outside_convs_seconds": outside,
        "per_stage_seconds": per_stage,
        "whole_model_ratio_to_torch": {
            "ort_recipe_fft": whole["ort_recipe_fft"] / whole["torch"],
            "ort_best_per_layer": best_whole / whole["torch"],
        },
        "target_budget": {
            "ratio": TARGET_RATIO,
            "ort_seconds_outside_recipe_fft_layers": rest,
            "seconds_left_for_recipe_fft_layers": left,
            "recipe_fft_layers_seconds": fft_layers,
            "speed_up_needed_over_torch": fft_layers["torch"] / left if left > 0 else None,
            "speed_up_needed_over_ort_fft": fft_layers["ort_recipe_fft"] / left
            if left > 0
            else None,
            "ratio_if": {name: value / whole["torch"] for name, value in ratio_if.items()},
        },
        "layers": layers,
    }
    headline = (
        "whole_model_seconds",
        "conv_ratio_to_torch",
        "outside_convs_seconds",
        "whole_model_ratio_to_torch",
        "target_budget",
    )
    write_result(args.out, result, headline)


if __name__ == "__main__":
    main()
