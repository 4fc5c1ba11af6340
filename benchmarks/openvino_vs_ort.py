"""OpenVINO against ONNX Runtime on the CPU, same run, same threads: RTF per model and which wins.

For HiFi-GAN V1 (FP32 and the recipe's mixed INT8), the Piper en_US-joe voice (FP32 and mixed
INT8) and the GPT-TTS decode step (seeded weights, the mid shape of benchmarks/gpt_tts.py, FP32 at
cache lengths 50, 500 and 1,500): each recipe's artifacts are built (or reused), compiled with
`--backend openvino`, and both are timed in turns on the recipe's own evaluation data: RTF is the
median over rounds of the summed run time over the summed audio time (a decode step:
milliseconds per code). FP32 IR passes speedy's parity check against the ONNX graph; two INT8
implementations round differently, so the INT8 IR is compiled unchecked and both INT8 runtimes
are scored against the FP32 audio instead (PESQ-WB, SNR), beside their largest difference from
each other. Writes benchmarks/results/openvino_vs_ort_cpu.json and the table of its figures,
openvino_vs_ort_cpu.md.

    python benchmarks/openvino_vs_ort.py [--threads 2] [--rounds 5] [--models hifigan piper gpt]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from speedy import runtime
from speedy.artifact import Artifact
from speedy.bench.machine import bench_machine
from speedy.machine import write_result
from speedy.pipeline import make_stage, run_recipe
from speedy.recipe import load_recipe
from speedy.runtime import Model
from speedy.stages.base import StageContext, reuse_or_execute
from speedy.tasks.speech_codes import CONTEXTS

ROOT = Path(__file__).resolve().parent


def with_openvino(artifact: Artifact, ctx: StageContext, verify: bool = True) -> Artifact:
    """`artifact` compiled for OpenVINO beside it (reused when unchanged; a Q/DQ graph stays
    INT8)."""
    stage = make_stage("compile", {"backend": "openvino", "verify": verify})
    out = artifact.path.parent / f"{artifact.path.name}_openvino"
    return reuse_or_execute(stage, artifact, out, ctx)[0]


def rtf_pair(ort: Model, openvino: Model, ctx: StageContext, rounds: int) -> dict:
    """RTF of both over the evaluation data, in turns, and their largest output difference."""
    task, feeds = ctx.task, [ctx.task.inputs(example) for example in ctx.examples]
    seconds: dict[str, list[float]] = {"ort": [], "openvino": []}
    audio = sum(task.seconds(task.run(ort, f)) for f in feeds)  # also the warm-up
    difference = 0.0
    for f in feeds:
        a, b = task.run(ort, f), task.run(openvino, f)
        difference = max(difference, *(float(np.abs(a[k] - b[k]).max()) for k in a))
    for _ in range(rounds):
        for name, model in (("ort", ort), ("openvino", openvino)):
            start = time.perf_counter()
            for f in feeds:
                task.run(model, f)
            seconds[name].append(time.perf_counter() - start)
    rtf = {name: statistics.median(s) / audio for name, s in seconds.items()}
    return {
        "rtf": rtf,
        "openvino_speedup": rtf["ort"] / rtf["openvino"],
        "max_abs_difference": difference,
        "audio_seconds": audio,
    }


def quality(reference: Model, models: dict[str, Model], ctx: StageContext) -> dict:
    """PESQ-WB and SNR of each model's audio against the reference's, over the evaluation data."""
    task, figures = ctx.task, {}
    metrics = [m for m in ("pesq", "snr") if m in task.metrics]
    feeds = [task.inputs(example) for example in ctx.examples]
    expected = [task.run(reference, f) for f in feeds]
    for name, model in models.items():
        runs = zip(expected, feeds, strict=True)
        scores = [task.compare(e, task.run(model, f), metrics) for e, f in runs]
        figures[name] = {m: statistics.mean(s[m] for s in scores) for m in metrics}
    return figures


def recipe_pairs(recipe: str, threads: int, rounds: int, build: Path) -> dict:
    """FP32 (simplify) and mixed INT8 (quantize) of a recipe, each against its OpenVINO IR."""
    outcomes, ctx = run_recipe(load_recipe(recipe), build, threads=threads)
    found = {o.stage: o.artifact for o in outcomes}
    figures = {}
    fp32 = runtime.load(found["simplify"].path, threads=threads)
    for label, stage in (("fp32", "simplify"), ("mixed_int8", "quantize")):
        ov = with_openvino(found[stage], ctx, verify=stage == "simplify")
        models = [runtime.load(a.path, threads=threads) for a in (found[stage], ov)]
        figures[label] = rtf_pair(*models, ctx, rounds)
        if stage == "simplify":
            figures[label]["parity"] = ov.manifest.reports["parity"]
        else:
            both = dict(zip(("ort", "openvino"), models, strict=True))
            figures[label]["against_fp32"] = quality(fp32, both, ctx)
    return figures


def gpt_steps(threads: int, rounds: int, build: Path) -> dict:
    """Milliseconds of one decode step of the mid GPT at each cache length, ORT and OpenVINO."""
    from gpt_tts import recipe_file  # benchmarks/gpt_tts.py: the mid shape

    with tempfile.TemporaryDirectory() as tmp:
        recipe = load_recipe(str(recipe_file("mid", Path(tmp))))
        outcomes, ctx = run_recipe(recipe, build, threads=threads)
    export = {o.stage: o.artifact for o in outcomes}["export"]
    ov = with_openvino(export, ctx)
    models = {"ort": runtime.load(export.path, threads=threads)}
    models["openvino"] = runtime.load(ov.path, threads=threads)
    task = ctx.task
    times: dict[str, dict[int, list[float]]] = {n: {c: [] for c in CONTEXTS} for n in models}
    for _ in range(rounds):
        for length in CONTEXTS:
            for name, model in models.items():
                times[name][length].append(1000 * task.step_seconds(model, length, repeats=3))
    ms = {n: {c: statistics.median(v) for c, v in by.items()} for n, by in times.items()}
    return {
        "step_ms": ms,
        "openvino_speedup": {c: ms["ort"][c] / ms["openvino"][c] for c in CONTEXTS},
        "parity": ov.manifest.reports["parity"],
    }


def table(result: dict) -> str:
    """The figures as a Markdown table: RTF (a decode step: ms) of each runtime, and which wins."""
    rows = ["| model | ORT | OpenVINO | OpenVINO speed-up | faster |", "|---|---|---|---|---|"]
    for recipe in ("hifigan_v1", "piper_joe"):
        for label, figures in result.get(recipe, {}).items():
            ort, ov = figures["rtf"]["ort"], figures["rtf"]["openvino"]
            winner = "OpenVINO" if ov < ort else "ORT"
            speedup = figures["openvino_speedup"]
            rows.append(
                f"| {recipe} {label} (RTF) | {ort:.3f} | {ov:.3f} | {speedup:.2f}x | {winner} |"
            )
    if steps := result.get("gpt_tts_mid_decode_step"):
        for length, ort in steps["step_ms"]["ort"].items():
            ov = steps["step_ms"]["openvino"][length]
            winner = "OpenVINO" if ov < ort else "ORT"
            rows.append(
                f"| GPT-TTS mid decode step, cache {length} (ms) | {ort:.1f} | {ov:.1f} | "
                f"{ort / ov:.2f}x | {winner} |"
            )
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=["hifigan", "piper", "gpt"])
    parser.add_argument("--build-dir", type=Path, default=ROOT.parent / "build")
    args = parser.parse_args()
    result: dict = {"machine": bench_machine(), "threads": args.threads, "rounds": args.rounds}
    recipes = {"hifigan": "hifigan_v1", "piper": "piper_joe"}
    for model in args.models:
        if model == "gpt":
            result["gpt_tts_mid_decode_step"] = gpt_steps(args.threads, args.rounds, args.build_dir)
        else:
            result[recipes[model]] = recipe_pairs(
                recipes[model], args.threads, args.rounds, args.build_dir
            )
    write_result(ROOT / "results" / "openvino_vs_ort_cpu.json", result)
    (ROOT / "results" / "openvino_vs_ort_cpu.md").write_text(table(result))


if __name__ == "__main__":
    main()
