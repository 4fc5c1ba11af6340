"""Sambert text-to-wave pipeline: acoustic variants vs FP32 ONNX, and per-stage RTF end to end.

Builds (or reuses) the sambert_zh_en and hifigan_v1 recipes' artifacts, then on the recipe's
evaluation sentences (not the calibration set) measures, in one process with interleaved repeats:
each acoustic artifact's mel distance to the FP32 ONNX mels (mean |log-mel difference| over the
frames both hold, and the largest length difference), its RTF and RTF ratio to FP32 ONNX; and
the RTF of each stage (front end, acoustic, vocoder) of the chain through the HiFi-GAN V1 ONNX
artifact. The quantize stage builds INT8 (the recipe's settings: MatMul/Gemm layers, calibrated
on calibration/texts_zh_en.txt; --no-quantize skips it) and FP16 variants; others join with
--acoustic NAME=DIR. Writes benchmarks/results/sambert_pipeline_cpu.json.

    python benchmarks/sambert_pipeline.py [--acoustic NAME=DIR] [--repeats N]
"""

import argparse
import os
import statistics
from pathlib import Path

import numpy as np

from speedy import runtime
from speedy.artifact import Artifact
from speedy.chain import Chain
from speedy.machine import machine_info, write_result
from speedy.measure import medians, rtf_samples, total_seconds
from speedy.pipeline import make_stage, run_recipe
from speedy.recipe import Recipe, load_recipe
from speedy.runtime import Model
from speedy.stages.base import StageContext, reuse_or_execute
from speedy.stages.options import QuantizeOptions
from speedy.tasks import Task

ROOT = Path(__file__).resolve().parent
REFERENCE = "fp32"  # the simplified FP32 ONNX artifact every variant is compared with


def build(recipe: Recipe, build_dir: Path, threads: int) -> tuple[dict[str, Path], StageContext]:
    """The recipe's artifacts (built or reused) by stage, and its stage context."""
    outcomes, ctx = run_recipe(recipe, build_dir, threads=threads)
    return {o.stage: o.artifact.path for o in outcomes}, ctx


def quantized(
    parent: Path, int8: QuantizeOptions, ctx: StageContext, build_dir: Path
) -> dict[str, Path]:
    """INT8 (with the `int8` quantize settings) and FP16 artifacts of `parent`, each with its
    quality report against `parent`."""
    artifact = Artifact.open(parent)
    settings = {"int8": int8, "fp16": QuantizeOptions(precision="fp16")}
    out = {}
    for name, options in settings.items():
        stage = make_stage("quantize", options)
        target = build_dir / "sambert_zh_en" / name
        out[name] = reuse_or_execute(stage, artifact, target, ctx)[0].path
    return out


def named_paths(values: list[str]) -> dict[str, Path]:
    pairs = [value.split("=", 1) for value in values]
    if any(len(pair) != 2 for pair in pairs):
        raise SystemExit("--acoustic takes NAME=ARTIFACT_DIR")
    return {name: Path(path) for name, path in pairs}


def mel_distances(models: dict[str, Model], task: Task, examples: list) -> dict[str, dict]:
    """Each model's mean mel distance (and worst length difference) to the reference's."""
    metrics = ("mel", "frames_diff")
    results: dict[str, dict[str, list]] = {name: {m: [] for m in metrics} for name in models}
    for example in examples:
        inputs = task.inputs(example)
        expected = task.run(models[REFERENCE], inputs)
        for name, model in models.items():
            for metric, value in task.compare(expected, task.run(model, inputs), metrics).items():
                results[name][metric].append(value)
    return {
        name: {"mel": float(np.mean(r["mel"])), "frames_diff_max": float(max(r["frames_diff"]))}
        for name, r in results.items()
    }


def stage_rtf(chains: dict[str, Chain], texts: list[str], repeats: int) -> dict:
    """Median over repeats (chains interleaved) of each stage's compute / audio seconds."""
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in chains}
    for round_index in range(repeats + 1):  # the first round warms up
        for name, chain in chains.items():
            results = [chain(text=text) for text in texts]
            audio = sum(r.audio_seconds for r in results)
            seconds = {
                stage: sum(r.seconds[stage] for r in results) for stage in results[0].seconds
            }
            if round_index:
                rounds[name].append({s: v / audio for s, v in seconds.items()} | {"audio": audio})
    return {
        name: {
            stage: statistics.median(r[stage] for r in runs)
            for stage in ("front_end", "acoustic", "vocoder")
        }
        | {"total": statistics.median(sum(v for k, v in r.items() if k != "audio") for r in runs)}
        | {"audio_seconds": runs[0]["audio"]}
        for name, runs in rounds.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--acoustic", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--quantize", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--build-dir", type=Path, default=ROOT.parent / "build")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "sambert_pipeline_cpu.json")
    args = parser.parse_args()

    recipe = load_recipe("sambert_zh_en")
    built, ctx = build(recipe, args.build_dir, args.threads)
    vocoder = build(load_recipe("hifigan_v1"), args.build_dir, args.threads)[0]["simplify"]
    variants = {"torch": built["torch"], REFERENCE: built["simplify"]}
    if args.quantize:
        variants |= quantized(built["simplify"], recipe.quantize, ctx, args.build_dir)
    variants |= named_paths(args.acoustic)
    models = {name: runtime.load(path, threads=args.threads) for name, path in variants.items()}
    task = ctx.task

    rtf = medians(rtf_samples(models, task, ctx.examples, repeats=args.repeats))
    distances = mel_distances(models, task, ctx.examples)
    chains = {
        name: Chain.load(path, vocoder, threads=args.threads)
        for name, path in variants.items()
        if name != "torch"  # eager PyTorch is compared above; the chain is about deployment
    }
    texts = [example.text for example in ctx.examples]
    result = {
        "benchmark": "sambert_zh_en acoustic variants vs FP32 ONNX; text-to-wave per-stage RTF",
        "machine": machine_info() | {"load_average_1_5_15min_at_end": os.getloadavg()},
        "data": {
            "texts": str(recipe.data_dir()),
            "sentences": len(texts),
            "audio_seconds_fp32": total_seconds(
                task, models[REFERENCE], [task.inputs(e) for e in ctx.examples]
            ),
        },
        "threads": args.threads,
        "repeats": args.repeats,
        "variants": {name: str(path) for name, path in variants.items()},
        "int8_settings": (
            recipe.quantize.model_dump(mode="json", exclude_unset=True) if args.quantize else None
        ),
        "quantize_quality_vs_fp32_on_eval_texts": {
            name: Artifact.open(path).manifest.reports.get("quality", {}).get("metrics")
            for name, path in variants.items()
            if name not in ("torch", REFERENCE)
        },
        "acoustic_rtf": rtf,
        "acoustic_rtf_ratio_to_fp32": {name: v / rtf[REFERENCE] for name, v in rtf.items()},
        "mel_distance_to_fp32": distances,
        "pipeline_rtf_with_hifigan_v1_onnx": stage_rtf(chains, texts, args.repeats),
    }
    keys = (
        "acoustic_rtf_ratio_to_fp32",
        "mel_distance_to_fp32",
        "pipeline_rtf_with_hifigan_v1_onnx",
    )
    write_result(args.out, result, keys)


if __name__ == "__main__":
    main()
