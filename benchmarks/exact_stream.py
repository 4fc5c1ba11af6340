"""Quantized streams against their whole decode: the Qwen3-TTS-Tokenizer-12Hz decoder and
decoder_step (the `qwen-tts` package's classes, published configuration, seeded weights; built
by `speedy run qwen3_tts_tokenizer_12hz`) quantized together two ways, on this CPU, one run:

* `int8_weights` (speedy's default for a streaming pair): float activations, every layer's weight
  stored in int8 per output channel and made float32 as the graphs load;
* `int8_rounded` (`--no-exact-stream`): static INT8, the step graph given the whole graph's
  scales.

For FP32 and each, on the codes of held-out LJSpeech clips (the FP32 encoder's), the models
taking turns clip by clip: the whole decode's RTF, the stream's (80 ms, one frame per
decoder_step call) RTF and first chunk, the stream against the model's own whole decode
(largest difference and SNR), the whole decode against FP32's (SNR), and the sizes.

    python benchmarks/exact_stream.py [--artifact DIR] [--data DIR] [--clips N]
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import codec_12hz as base  # the codec benchmark's clips, quantize variants and stream timing
import numpy as np

from speedy import runtime
from speedy.artifact import Artifact
from speedy.audio.io import list_audio, read_audio
from speedy.bench.machine import bench_machine
from speedy.machine import write_result
from speedy.pipeline import context_for
from speedy.quality import snr_db
from speedy.tasks import task_for
from speedy.tasks.codec import Codec

ROOT = Path(__file__).resolve().parent
PAIR = {"graphs": ["decoder", "decoder_step"], "precision": "int8", "method": "minmax",
        "calib_size": 16, "no_budget": True}  # fmt: skip
VARIANTS = {"int8_weights": PAIR, "int8_rounded": PAIR | {"exact_stream": False}}


def size(artifact: Artifact) -> dict:
    return {"size_mb": artifact.size_bytes / 1e6}


def stream_against_whole(model: runtime.Model, task: Codec, codes: list[np.ndarray]) -> dict:
    """Largest difference between each clip's 80 ms stream and its whole decode."""
    worst = 0.0
    for clip in codes:
        whole = model["decoder"].run({"codes": clip})["audio"].reshape(-1)
        stream = np.concatenate(list(task.streamer(0.08).chunks(model, clip)), -1).reshape(-1)
        worst = max(worst, float(np.abs(stream - whole).max()))
    return {"stream_vs_whole_max_abs": worst}


def measured(paths: dict[str, Path], data: Path, clips: int, threads: int) -> dict:
    """The figures of each artifact at `paths` (FP32 first), in this process."""
    models = {name: runtime.load(path, threads=threads) for name, path in paths.items()}
    task = task_for(models["fp32"].manifest.model)
    assert isinstance(task, Codec)
    fp32 = models["fp32"]
    audio = [task.frames(read_audio(p, task.audio.sample_rate)) for p in list_audio(data)[:clips]]
    codes = [fp32["encoder"].run(task.inputs(a))["codes"] for a in audio]
    figures = {}
    for name, model in models.items():
        figures[name] = base.whole_and_streamed(model, task, codes)
        figures[name] |= stream_against_whole(model, task, codes)
        figures[name]["whole_vs_fp32_snr_db"] = min(
            snr_db(
                fp32["decoder"].run({"codes": c})["audio"].reshape(-1),
                model["decoder"].run({"codes": c})["audio"].reshape(-1),
            )
            for c in codes
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--artifact", type=Path, default=ROOT.parent / "build/qwen3_tts_tokenizer_12hz/simplify"
    )
    parser.add_argument("--data", type=Path, default=base.SHARED_CLIPS)
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "exact_stream_cpu.json")
    parser.add_argument("--measure", help="(the measurements, in a process of their own)")
    args = parser.parse_args()
    if args.measure:
        paths = {name: Path(path) for name, path in json.loads(args.measure).items()}
        print(json.dumps(measured(paths, args.data, args.clips, args.threads)))
        return
    simplified = Artifact.open(args.artifact)
    with tempfile.TemporaryDirectory() as tmp:
        held_out = base.held_out_clips(args.data, Path(tmp) / "held_out")
        ctx = context_for(simplified.manifest.model, held_out, args.threads)
        variants, models = base.quantize_variants(
            {"simplify": simplified}, ctx, VARIANTS, Path(tmp) / "q", size
        )
        variants["fp32"] = size(simplified)
        # measured in a process of its own, apart from the quantizers' sessions and memory
        paths = json.dumps({name: str(model.path) for name, model in models.items()})
        command = [sys.executable, __file__, "--measure", paths, "--data", str(held_out),
                   "--clips", str(args.clips), "--threads", str(args.threads)]  # fmt: skip
        del models
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        for name, figures in json.loads(done.stdout.splitlines()[-1]).items():
            variants[name] |= figures
        clips = [p.stem for p in list_audio(held_out)[: args.clips]]
    result = {
        "benchmark": "Qwen3-TTS-Tokenizer-12Hz decoder + decoder_step quantized together, "
        f"streamed against the whole decode, on CPU, {args.threads} threads, one run",
        "machine": bench_machine(),
        "weights": "seeded (no checkpoint): SNR against FP32 compares precisions only",
        "artifact": str(args.artifact),
        "clips": clips,
        "variants": variants,
    }
    write_result(args.out, result)


if __name__ == "__main__":
    sys.exit(main())
