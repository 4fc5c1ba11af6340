"""HiFi-GAN V1 (real LJSpeech checkpoint): `speedy quantize` naive INT8, FP16 and mixed vs ORT FP32.

Builds (or reuses) the recipe's artifacts, then quantizes the simplified FP32 ONNX model three
ways, calibrating on the `ljspeech_calib` set (8 shared LJSpeech clips): naive INT8 (every node
ONNX Runtime can quantize, min/max ranges), FP16, and mixed precision under the default budget
(pesq>=4.0; per-tensor clipping search for the ranges). The clipping search's own effect is
measured by rebuilding mixed's exact layer choice with plain min/max ranges. On the other 8
shared clips (never calibrated on), in one process at 2 threads: PESQ-WB, log-mel distance,
MR-STFT distance and SNR of each model's audio against the FP32 model's audio, DNSMOS OVRL of
every model's audio, file size and RTF (interleaved repeats) as ratios to FP32.
Writes benchmarks/results/quantize_hifigan_v1_cpu.json.

    python benchmarks/quantize_hifigan.py [--repeats N] [--threads N]
"""

import argparse
import json
import math
import tempfile
from pathlib import Path

import numpy as np

from speedy import runtime
from speedy.artifact import Artifact
from speedy.audio.cache import FeatureCache, default_cache_dir
from speedy.backends.ort.session import OnnxSession
from speedy.bench.dnsmos import Dnsmos
from speedy.bench.machine import bench_machine
from speedy.machine import write_result
from speedy.measure import medians, rtf_samples
from speedy.pipeline import make_stage, run_recipe
from speedy.quantize.calibration import source_files
from speedy.quantize.graph import analyze
from speedy.quantize.metrics import mean_quality
from speedy.quantize.qdq import preprocess
from speedy.recipe import load_recipe
from speedy.runtime import Model
from speedy.stages.base import StageContext, reuse_or_execute
from speedy.stages.quantize import QuantizeStage
from speedy.tasks import task_for
from speedy.tasks.vocoder import Vocoder

ROOT = Path(__file__).resolve().parent
SHARED_CLIPS = ROOT.parent.parent / "shared" / "data" / "ljspeech" / "wavs"
CALIBRATION = "ljspeech_calib"
# The shared clips not in `ljspeech_calib` (they include the 4 clips shipped with speedy).
EVALUATION = [f"LJ001-{n:04d}.wav" for n in (2, 4, 6, 8, 11, 13, 15, 16)]
GRAPH = "model"  # HiFi-GAN's one graph
VARIANTS = {
    "int8-naive": {
        "precision": "int8",
        "method": "minmax",
        "calib": CALIBRATION,
        "no_budget": True,
    },
    "fp16": {"precision": "fp16"},
    "mixed": {"precision": "mixed", "calib": CALIBRATION},
}
METRICS = ["pesq", "mel", "stft", "snr"]
TARGETS = {
    "mixed": {
        "pesq_min": 4.0,
        "dnsmos_ovrl_delta_max": 0.05,
        "rtf_ratio_max": 0.67,
        "size_ratio_max": 0.40,
    },
    "fp16": {"pesq_min": 4.4, "size_ratio_max": 0.52},
    "int8-naive": {"collapsed": True},
}


def quantized(
    name: str, parent: Artifact, build: Path, ctx: StageContext
) -> tuple[Artifact, float | None]:
    """The variant's artifact (reused when unchanged) and its build seconds when built now."""
    return reuse_or_execute(
        make_stage("quantize", VARIANTS[name]), parent, build / f"quantize-{name}", ctx
    )


def minmax_twin(mixed: Artifact, parent: Artifact, ctx: StageContext, out: Path) -> Path:
    """Mixed's exact choice of INT8 and float groups, rebuilt with min/max activation ranges."""
    stage = make_stage("quantize", VARIANTS["mixed"] | {"method": "minmax"})
    assert isinstance(stage, QuantizeStage)
    floats = set(mixed.manifest.reports["quantize"][GRAPH]["float_groups"])
    model = runtime.load(parent.path, threads=ctx.threads, verify=False)
    with tempfile.TemporaryDirectory(prefix="speedy-twin-") as tmp:
        float_model = Path(tmp) / "float.onnx"
        info = analyze(preprocess(parent.file(GRAPH), float_model), ctx.spec.sizes(), "block")
        builder = stage.calibrate(model, GRAPH, float_model, info, ctx).builder
        builder.find_unfused(Path(tmp) / "candidate.onnx")
        builder.build([g for g in info.groups if g not in floats], out)
    return out


def shown(value: float | None) -> float:
    """A figure for the printed table: NaN where it could not be measured (None)."""
    return math.nan if value is None else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--build-dir", type=Path, default=ROOT.parent / "build")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "results" / "quantize_hifigan_v1_cpu.json"
    )
    args = parser.parse_args()

    recipe = load_recipe("hifigan_v1")
    outcomes, _ = run_recipe(recipe, args.build_dir, threads=args.threads)
    parent = next(o.artifact for o in outcomes if o.stage == "simplify")
    spec = parent.manifest.model
    task = task_for(spec)
    assert isinstance(task, Vocoder)
    cache = FeatureCache(default_cache_dir())
    evaluation = [task.read_data(SHARED_CLIPS / name, cache)[0] for name in EVALUATION]
    ctx = StageContext(spec=spec, task=task, examples=evaluation, threads=args.threads)
    build = args.build_dir / recipe.name

    artifacts, build_seconds = {}, {}
    for name in VARIANTS:
        artifacts[name], build_seconds[name] = quantized(name, parent, build, ctx)
    twin = minmax_twin(artifacts["mixed"], parent, ctx, build / "mixed-minmax-ranges.onnx")

    models = {"fp32": runtime.load(parent.path, threads=args.threads)}
    models |= {n: runtime.load(a.path, threads=args.threads) for n, a in artifacts.items()}
    graph = parent.manifest.graphs[GRAPH]
    twin_session = OnnxSession(GRAPH, graph, twin, spec.dims, threads=args.threads)
    models["mixed-minmax-ranges"] = Model(parent, {GRAPH: twin_session})
    files = {"fp32": parent.file(GRAPH), **{n: a.file(GRAPH) for n, a in artifacts.items()}}
    files["mixed-minmax-ranges"] = twin

    dnsmos = Dnsmos(threads=args.threads)
    utterances = [task.inputs(f) for f in evaluation]
    reference = [models["fp32"].run(feeds) for feeds in utterances]
    rows = {}
    for name, model in models.items():
        outputs = [model.run(feeds) for feeds in utterances]
        quality = (
            mean_quality(
                [task.compare(r, o, METRICS) for r, o in zip(reference, outputs, strict=True)]
            )
            if name != "fp32"
            else {}
        )
        ovrl = [dnsmos.score(task.waveforms(o)[0], spec.audio.sample_rate).ovrl for o in outputs]
        rows[name] = {
            "quality_vs_fp32": quality,
            "dnsmos_ovrl": float(np.mean(ovrl)),
            "dnsmos_ovrl_per_clip": ovrl,
        }
        print(f"{name}: {quality} DNSMOS OVRL {np.mean(ovrl):.3f}", flush=True)

    rtf = medians(rtf_samples(models, task, evaluation, repeats=args.repeats))
    fp32_bytes = files["fp32"].stat().st_size
    for name, row in rows.items():
        row["rtf"] = rtf[name]
        row["rtf_ratio_to_fp32"] = rtf[name] / rtf["fp32"]
        row["size_bytes"] = files[name].stat().st_size
        row["size_ratio_to_fp32"] = row["size_bytes"] / fp32_bytes
        row["dnsmos_ovrl_delta"] = row["dnsmos_ovrl"] - rows["fp32"]["dnsmos_ovrl"]
        if name in artifacts:
            report = artifacts[name].manifest.reports
            row["precision"] = artifacts[name].manifest.precision
            row["verdict"] = report["quality"]["verdict"]
            row["build_seconds"] = build_seconds[name]

    met = {}
    for name, target in TARGETS.items():
        row, checks = rows[name], {}
        if "pesq_min" in target:
            pesq = row["quality_vs_fp32"]["pesq"]  # None: unmeasured, never met
            checks["pesq"] = pesq is not None and pesq >= target["pesq_min"]
        if "dnsmos_ovrl_delta_max" in target:
            checks["dnsmos_ovrl"] = abs(row["dnsmos_ovrl_delta"]) <= target["dnsmos_ovrl_delta_max"]
        if "rtf_ratio_max" in target:
            checks["rtf_ratio"] = row["rtf_ratio_to_fp32"] <= target["rtf_ratio_max"]
        if "size_ratio_max" in target:
            checks["size_ratio"] = row["size_ratio_to_fp32"] <= target["size_ratio_max"]
        if "collapsed" in target:
            checks["collapsed_and_reported"] = row["verdict"].startswith("collapsed")
        met[name] = checks

    mixed_report = artifacts["mixed"].manifest.reports["quantize"][GRAPH]
    calibration_files = {path.name for path in source_files(CALIBRATION, task)}
    seconds = sum(f.shape[-1] * spec.audio.hop_length / spec.audio.sample_rate for f in evaluation)
    result = {
        "benchmark": "hifigan_v1 speedy quantize: naive INT8, FP16, mixed (budgeted) vs ORT FP32",
        "machine": bench_machine(),
        "threads": args.threads,
        "repeats": args.repeats,
        "calibration": {"set": CALIBRATION, **mixed_report["calibration"]},
        "evaluation": {
            "dir": str(SHARED_CLIPS),
            "clips": EVALUATION,
            "audio_seconds": seconds,
            "also_calibration_clips": sorted(set(EVALUATION) & calibration_files),
        },
        "results": rows,
        "targets": TARGETS,
        "met": met,
        "mixed": {
            "budget": mixed_report["budget"],
            "float_groups": mixed_report["float_groups"],
            "float_mac_share": mixed_report["float_mac_share"],
            "unfused_layers": mixed_report["unfused_layers"],
            "search": mixed_report["search"],
            "table": mixed_report["table"],
        },
        "clipping_search_effect": {
            "note": "same INT8/float layer choice as `mixed`, activation ranges by min/max instead",
            "mse_ranges": rows["mixed"]["quality_vs_fp32"],
            "minmax_ranges": rows["mixed-minmax-ranges"]["quality_vs_fp32"],
        },
    }
    header = (
        f"{'model':<20} {'PESQ':>6} {'OVRL':>6} {'dOVRL':>7} {'mel':>6} {'RTF x':>6} {'size x':>7}"
    )
    print(header)
    for name, row in rows.items():
        q = row["quality_vs_fp32"]
        print(
            f"{name:<20} {shown(q.get('pesq', math.nan)):>6.3f} {row['dnsmos_ovrl']:>6.3f} "
            f"{row['dnsmos_ovrl_delta']:>+7.3f} {shown(q.get('mel', 0.0)):>6.3f} "
            f"{row['rtf_ratio_to_fp32']:>6.3f} {row['size_ratio_to_fp32']:>7.3f}"
        )
    print(json.dumps(met, indent=2))
    write_result(args.out, result)


if __name__ == "__main__":
    main()
