"""HiFi-GAN V1 (real LJSpeech checkpoint) on real speech: PyTorch eager vs ONNX Runtime FP32.

Builds (or reuses) the recipe's artifacts, then on the shared LJSpeech clips measures, in one
process with interleaved repeats at 2 threads, the RTF of each artifact and the ratio to PyTorch
eager; and the PESQ-WB of PyTorch resynthesis against the recordings (front-end check).
Writes benchmarks/results/hifigan_v1_cpu.json.

    python benchmarks/hifigan_v1.py [--data DIR] [--repeats N]
"""

import argparse
import json
from pathlib import Path

import numpy as np

from speedy import runtime
from speedy.audio.io import list_audio, read_audio
from speedy.machine import machine_info
from speedy.measure import measure_rtf
from speedy.pipeline import context_for, run_recipe
from speedy.quality import pesq_wb
from speedy.recipe import DEFAULT_DATA, load_recipe

ROOT = Path(__file__).resolve().parent
SHARED_CLIPS = ROOT.parent.parent / "shared" / "data" / "ljspeech" / "wavs"
TARGET_RATIO = 0.55  # ORT FP32 RTF <= 0.55 x PyTorch eager RTF (issue 2)
TARGET_PESQ = 3.6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=SHARED_CLIPS if SHARED_CLIPS.is_dir() else DEFAULT_DATA
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--build-dir", type=Path, default=ROOT.parent / "build")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "hifigan_v1_cpu.json")
    args = parser.parse_args()

    recipe = load_recipe("hifigan_v1")
    outcomes, _ = run_recipe(recipe, args.build_dir, threads=args.threads)
    artifacts = {o.stage: o.artifact for o in outcomes}
    ctx = context_for(recipe.model_spec(), args.data, args.threads)
    sessions = {name: runtime.load(a.path, threads=args.threads) for name, a in artifacts.items()}
    rtf = measure_rtf(sessions, ctx.spec, ctx.features, repeats=args.repeats)

    family, torch_session = ctx.spec.adapter(), sessions["torch"]
    pesq = {}
    for clip in list_audio(args.data):
        recording = read_audio(clip, ctx.spec.audio.sample_rate)
        feeds, _ = family.utterance(family.features(recording))
        pesq[clip.name] = pesq_wb(recording, family.waveform(torch_session.run(feeds)), 22050)

    ratio = {name: value / rtf["torch"] for name, value in rtf.items()}
    result = {
        "benchmark": "hifigan_v1 PyTorch eager vs ONNX Runtime FP32, and front-end PESQ",
        "machine": machine_info(),
        "data": {
            "dir": str(args.data),
            "clips": len(ctx.features),
            "audio_seconds": sum(family.utterance(f)[1] for f in ctx.features),
        },
        "threads": args.threads,
        "repeats": args.repeats,
        "rtf": rtf,
        "rtf_ratio_to_torch": ratio,
        "pesq_wb_resynthesis_torch": {
            "per_clip": pesq,
            "mean": float(np.mean(list(pesq.values()))),
        },
        "targets": {
            "ort_rtf_ratio_max": TARGET_RATIO,
            "ort_rtf_ratio_met": ratio["simplify"] <= TARGET_RATIO,
            "pesq_mean_min": TARGET_PESQ,
            "pesq_met": float(np.mean(list(pesq.values()))) >= TARGET_PESQ,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("rtf", "rtf_ratio_to_torch", "targets")}, indent=2))
    print(f"mean PESQ-WB {result['pesq_wb_resynthesis_torch']['mean']:.3f}; wrote {args.out}")


if __name__ == "__main__":
    main()
