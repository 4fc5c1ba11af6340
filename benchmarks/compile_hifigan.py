"""HiFi-GAN V1 (real LJSpeech checkpoint): `speedy compile` ORT and AOTInductor vs ORT FP32.

Builds (or reuses) the recipe's torch/export/simplify artifacts and its own compile stage (ORT,
block FFT convolutions), compiles the simplified ONNX with plain `--backend ort` (profiles from
the shared LJSpeech clips) and the torch artifact with `--backend aoti` (CPU), each checked
against its parent at the recipe's parity sizes. Then, in one process with interleaved repeats,
measures the RTF of PyTorch eager, ORT FP32 (simplify), both ORT-compiled models and the
AOTInductor package on the same clips, and how long each takes to load. Writes
benchmarks/results/compile_hifigan_cpu.json.

    python benchmarks/compile_hifigan.py [--data DIR] [--repeats N]
"""

import argparse
import statistics
import time
from pathlib import Path

from speedy import runtime
from speedy.artifact import Artifact
from speedy.machine import machine_info, write_result
from speedy.measure import medians, rtf_samples
from speedy.pipeline import context_for, make_stage, run_recipe
from speedy.recipe import DEFAULT_DATA, load_recipe
from speedy.stages.base import StageContext, reuse_or_execute
from speedy.tasks import Task

ROOT = Path(__file__).resolve().parent
SHARED_CLIPS = ROOT.parent.parent / "shared" / "data" / "ljspeech" / "wavs"


def compiled(
    settings: dict, parent: Artifact, out: Path, ctx: StageContext
) -> tuple[Artifact, float | None]:
    """The compiled artifact (reused when unchanged) and its compile seconds when built now."""
    return reuse_or_execute(make_stage("compile", settings), parent, out, ctx)


def load_seconds(paths: dict[str, Path], threads: int, repeats: int) -> dict[str, float]:
    """Median seconds to open each artifact's session (interleaved); the files' digests are not
    checked here, so that the figure is the session's own load time."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(repeats):
        for name, path in paths.items():
            start = time.perf_counter()
            runtime.load(path, threads=threads, verify=False)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def audio_seconds(task: Task, mels: list) -> float:
    """Seconds of audio the mels stand for (one hop of samples per frame)."""
    return sum(m.shape[-1] * task.audio.hop_length / task.audio.sample_rate for m in mels)


def disk_mb(artifact: Artifact) -> float:
    """MB of every file in the artifact's directory, its manifest included."""
    return sum(p.stat().st_size for p in artifact.path.rglob("*") if p.is_file()) / 1e6


def worst_parity(artifact: Artifact) -> dict:
    parity = artifact.manifest.reports["parity"]
    worst = max(max(c["max_abs_error"].values()) for c in parity["cases"])
    sizes = [c["sizes"]["frames"] for c in parity["cases"]]
    return {
        "max_abs_error": worst,
        "atol": parity["atol"],
        "passed": parity["passed"],
        "frames": sizes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="clips timed for RTF")
    parser.add_argument("--profiles-from", type=Path, default=SHARED_CLIPS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--build-dir", type=Path, default=ROOT.parent / "build")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "compile_hifigan_cpu.json")
    args = parser.parse_args()
    runtime.trust_code()  # the AOTInductor packages it loads are the ones it compiles

    recipe = load_recipe("hifigan_v1")
    recipe = recipe.model_copy(update={"stages": [*recipe.stages, "compile"]})
    outcomes, ctx = run_recipe(recipe, args.build_dir, threads=args.threads)
    built = {o.stage: o.artifact for o in outcomes}
    fft_built = next(o for o in outcomes if o.stage == "compile")
    fft_seconds = None if fft_built.reused else fft_built.seconds
    base = args.build_dir / recipe.name
    ort_settings = {"backend": "ort", "profiles_from": str(args.profiles_from)}
    ort_artifact, ort_seconds = compiled(ort_settings, built["simplify"], base / "compile-ort", ctx)
    aoti, aoti_seconds = compiled({"backend": "aoti"}, built["torch"], base / "compile-aoti", ctx)
    artifacts = {
        "torch eager": built["torch"],
        "ORT FP32 (simplify)": built["simplify"],
        "ORT compiled (speedy compile --backend ort)": ort_artifact,
        "ORT compiled, FFT convs (the recipe's compile stage)": built["compile"],
        "AOTInductor CPU (speedy compile --backend aoti)": aoti,
    }

    timed = context_for(recipe.model_spec(), args.data, args.threads)
    models = {name: runtime.load(a.path, threads=args.threads) for name, a in artifacts.items()}
    rtf = medians(rtf_samples(models, timed.task, timed.examples, repeats=args.repeats))
    reference = rtf["ORT FP32 (simplify)"]
    paths = {name: a.path for name, a in artifacts.items()}
    result = {
        "benchmark": "hifigan_v1: speedy compile (ort, aoti) next to ORT FP32 and PyTorch eager",
        "machine": machine_info(),
        "gpu": "none: this task had no GPU machine, so no GPU or TensorRT figures were taken",
        "data": {
            "rtf_clips": str(args.data),
            "clips": len(timed.examples),
            "audio_seconds": audio_seconds(timed.task, timed.examples),
            "profiles_from": str(args.profiles_from),
        },
        "threads": args.threads,
        "repeats": args.repeats,
        "rtf": rtf,
        "rtf_ratio_to_ort_fp32": {name: value / reference for name, value in rtf.items()},
        "load_seconds": load_seconds(paths, args.threads, repeats=3),
        "stage_seconds": {
            "ort": ort_seconds,
            "ort_fft": fft_seconds,
            "aoti": aoti_seconds,
            "note": "build + parity check at the recipe's sizes; null: reused from an earlier run",
        },
        "parity_vs_parent": {
            "ort": worst_parity(ort_artifact),
            "ort_fft": worst_parity(built["compile"]),
            "aoti": worst_parity(aoti),
        },
        "ort_profiles": ort_artifact.manifest.reports["compile"]["model"]["profiles"],
        "ort_profile_coverage": ort_artifact.manifest.reports["compile"]["model"]["profile_data"],
        "sizes_mb": {name: disk_mb(a) for name, a in artifacts.items()},
    }
    keys = ("rtf", "rtf_ratio_to_ort_fp32", "load_seconds", "stage_seconds", "parity_vs_parent")
    write_result(args.out, result, keys)


if __name__ == "__main__":
    main()
