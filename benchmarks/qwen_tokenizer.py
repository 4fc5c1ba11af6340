"""Qwen3-TTS-Tokenizer-12Hz (the `qwen-tts` package's classes, published configuration, seeded
weights) on this CPU, one run, ONNX Runtime and PyTorch on the same threads: issue 32's figures.

1. Encoder: ONNX codes against upstream `Qwen3TTSTokenizerV2Model.encode` on every shared
   LJSpeech clip (22,050 Hz resampled to 24 kHz), and both encode RTFs.
2. Decode, clip by clip in turns: upstream eager `decode` (PyTorch) against ONNX Runtime FP32,
   FP16 and INT8 (static Q/DQ of decoder and decoder_step; mixed with --mixed) decoders: RTF,
   speed-up over eager, PESQ-WB / SNR / log-mel distance against FP32 on the clips not shipped
   with speedy (which calibrate INT8), and size. Seeded weights: PESQ says how far a precision
   moves the output, not how the audio sounds, so a row of FP32 plus white noise at the INT8
   output's SNR shows what such a PESQ means here.
3. Streaming through decoder_step at 80 ms (one frame per call) against the whole decode: cost,
   first-chunk latency, stream-vs-whole SNR; then 240 and 400 ms chunks.
4. Past upstream's 300-frame chunks: speedy's long decode (decoder_step, exact) against upstream
   `decode` (`chunked_decode`: 25 frames of left context, fewer than the receptive field), where
   they part.
5. 10 s and 10 min of codes decoded chunk by chunk into a WAV file, each in a fresh process:
   peak RSS.

    python benchmarks/qwen_tokenizer.py [--data DIR] [--long-seconds S|0] [--mixed]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import codec_12hz as base  # the codec benchmark's streaming and long-audio measurements
import numpy as np

from speedy import runtime
from speedy.audio.io import list_audio, read_audio
from speedy.bench.machine import bench_machine
from speedy.data_source import DEFAULT_CLIPS
from speedy.families.network import load_network
from speedy.machine import write_result
from speedy.pipeline import run_recipe
from speedy.quality import snr_db
from speedy.recipe import load_recipe
from speedy.tasks.codec import Codec

ROOT = Path(__file__).resolve().parent
RECIPE = "qwen3_tts_tokenizer_12hz"
GOALS = {
    "fp32_over_eager_min": 1.5,
    "int8_over_fp32_min": 1.3,
    "int8_pesq_min": 4.0,
    "stream_240ms_over_whole_max": 1.25,
    "decoder_parity_atol": 1e-4,
}


def upstream_model(built: dict):
    """The upstream model (in eval mode) with the torch artifact's weights."""
    torch_artifact = built["torch"]
    return load_network(torch_artifact.manifest.model, torch_artifact.file("decoder"))


def encoder_check(upstream, model: runtime.Model, task: Codec, clips: list[Path]):
    import torch

    rows, codes, seconds = [], [], {"onnx": 0.0, "upstream": 0.0}
    audio_seconds = 0.0
    for path in clips:
        audio = task.frames(read_audio(path, task.audio.sample_rate))
        audio_seconds += audio.size / task.audio.sample_rate
        start = time.perf_counter()
        found = model["encoder"].run(task.inputs(audio))["codes"]
        seconds["onnx"] += time.perf_counter() - start
        wave = torch.from_numpy(audio)[None]
        start = time.perf_counter()
        with torch.no_grad():
            (expected,) = upstream.encode(wave, torch.ones_like(wave, dtype=torch.long)).audio_codes
        seconds["upstream"] += time.perf_counter() - start
        expected = expected.numpy().T[None]
        rows.append({"clip": path.stem, "frames": int(found.shape[-1]),
                     "identical": bool(np.array_equal(found, expected)),
                     "agreement": float(np.mean(found == expected))})  # fmt: skip
        codes.append(found)
    return {
        "clips": rows,
        "all_identical": all(r["identical"] for r in rows),
        "audio_seconds": audio_seconds,
        "onnx_encode_rtf": seconds["onnx"] / audio_seconds,
        "upstream_encode_rtf": seconds["upstream"] / audio_seconds,
    }, codes


def precisions(built: dict, ctx, upstream, codes: list[np.ndarray], out: Path, mixed: bool):
    """FP16, INT8 (and mixed) decoders; every decoder and upstream eager take turns per clip."""
    import torch

    variants = {
        "fp16": {"graphs": ["decoder"], "precision": "fp16"},
        "int8": {"graphs": ["decoder", "decoder_step"], "precision": "int8",
                 "method": "minmax", "calib_size": 16, "no_budget": True,
                 "exact_stream": False},  # INT8 activations (exact_stream.py: the default)
    }  # fmt: skip
    if mixed:
        variants["mixed"] = {"graphs": ["decoder"], "precision": "mixed", "calib_size": 16}
    result, models = base.quantize_variants(
        built,
        ctx,
        variants,
        out,
        lambda artifact: {
            "decoder_size_ratio": artifact.manifest.reports["quantize"]["decoder"]["size_ratio"],
            "size_mb": artifact.size_bytes / 1e6,
        },
    )
    result["fp32"] = {"size_mb": built["simplify"].size_bytes / 1e6}
    seconds = dict.fromkeys([*models, "upstream_eager"], 0.0)
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in models}
    audio_seconds = sum(c.shape[-1] for c in codes) * 0.08
    for clip in codes:  # upstream and every precision take turns on every clip
        start = time.perf_counter()
        with torch.no_grad():
            upstream.decode(torch.from_numpy(clip).transpose(1, 2))
        seconds["upstream_eager"] += time.perf_counter() - start
        for name, model in models.items():
            start = time.perf_counter()
            outputs[name].append(model["decoder"].run({"codes": clip})["audio"])
            seconds[name] += time.perf_counter() - start
    rtf = {name: s / audio_seconds for name, s in seconds.items()}
    result["upstream_eager"] = {"decode_rtf": rtf["upstream_eager"]}
    for name in models:
        result[name] |= {"decode_rtf": rtf[name],
                         "speed_up_over_eager": rtf["upstream_eager"] / rtf[name],
                         "speed_up_over_fp32": rtf["fp32"] / rtf[name]}  # fmt: skip
    reference = np.concatenate(outputs["fp32"], axis=-1)
    int8 = np.concatenate(outputs["int8"], axis=-1)
    snr = snr_db(reference.reshape(-1), int8.reshape(-1))
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(reference.shape) * np.sqrt(np.mean(reference**2) / 10 ** (snr / 10))
    result["fp32_plus_noise_at_int8_snr"] = {
        "snr_db": snr,
        "metrics_vs_fp32": ctx.task.compare(
            {"audio": reference}, {"audio": (reference + noise).astype(np.float32)},
            ("snr", "pesq", "mel"),
        ),
    }  # fmt: skip
    stream = base.whole_and_streamed(models["int8"], ctx.task, codes[:6])
    result["int8"]["stream_80ms_vs_int8_whole_snr_db"] = stream["stream_vs_whole_snr_db"]
    return result


def seams(model: runtime.Model, task: Codec, codes: np.ndarray) -> dict:
    """A stream in chunks of 1, 3 and 7 frames against the whole decode: SNR, largest error at
    any sample and at the samples either side of each seam, in dB below full scale."""
    whole = model["decoder"].run({"codes": codes})["audio"].reshape(-1)
    found = {}
    for chunk in (1, 3, 7):
        streamed = np.concatenate(list(task.streamer(chunk * 0.08).chunks(model, codes)), -1)
        error = np.abs(streamed.reshape(-1) - whole)
        edges = np.arange(chunk * 1920, whole.size, chunk * 1920)
        found[f"{chunk}_frames"] = {
            "snr_db": snr_db(whole, streamed.reshape(-1)),
            "max_abs_error": float(error.max()),
            "worst_seam_dbfs": float(
                20 * np.log10(max(error[np.r_[edges - 1, edges]].max(), 1e-12))
            ),
            "worst_sample_dbfs": float(20 * np.log10(max(error.max(), 1e-12))),
        }
    return found


def past_upstream_chunks(upstream, model: runtime.Model, task: Codec, codes: np.ndarray) -> dict:
    """500 frames: speedy's long decode against upstream `decode` (300-frame chunks, 25 frames
    of left context), per 100-frame span."""
    import torch

    codes = codes[..., :500]
    ours = task.decode(model, codes)
    with torch.no_grad():
        (theirs,) = upstream.decode(torch.from_numpy(codes).transpose(1, 2)).audio_values
    theirs = theirs.numpy()
    whole = model["decoder"].run({"codes": codes})["audio"].reshape(-1)
    ours = ours.reshape(-1)
    spans = {}
    for start in range(0, 500, 100):
        cut = slice(start * 1920, (start + 100) * 1920)
        spans[f"frames {start}-{start + 99}"] = {
            "max_abs_diff": float(np.abs(ours[cut] - theirs[cut]).max()),
            "snr_db": snr_db(ours[cut], theirs[cut]),
        }
    return {
        "frames": 500,
        "decoder_context_frames": task.codec.decoder_context,
        "ours_vs_one_whole_call_snr_db": snr_db(whole, ours),
        "ours_vs_upstream_decode": spans,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=base.SHARED_CLIPS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--long-seconds", type=float, default=600.0)
    parser.add_argument("--mixed", action="store_true")
    parser.add_argument("--build-dir", type=Path, default=ROOT.parent / "build")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "qwen_tokenizer_cpu.json")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        held_out = base.held_out_clips(args.data, Path(tmp) / "held_out")
        outcomes, ctx = run_recipe(load_recipe(RECIPE), args.build_dir, data=held_out)
        built = {o.stage: o.artifact for o in outcomes}
        task = ctx.task
        assert isinstance(task, Codec)
        upstream = upstream_model(built)
        model = runtime.load(built["simplify"].path, threads=args.threads)
        clips = list_audio(args.data)
        encoder, codes = encoder_check(upstream, model, task, clips)
        stream = base.streaming(model, task, codes)
        stream["chunks_1_3_7_frames_vs_whole"] = seams(model, task, codes[0])
        joined = np.concatenate(codes, axis=-1)
        chunks = past_upstream_chunks(upstream, model, task, joined)
        del model
        memory = None
        if args.long_seconds:
            memory = base.long_memory(
                built["simplify"].path, joined, args.long_seconds, args.threads
            )
        shipped = {p.name for p in list_audio(DEFAULT_CLIPS)}
        held = [c for c, p in zip(codes, clips, strict=True) if p.name not in shipped]
        figures = precisions(built, ctx, upstream, held, Path(tmp) / "q", args.mixed)
    parity = base.parity_figures(built)
    worst = max(c["max_abs_error"] for c in parity["simplify"]["decoder"])
    sweep = stream["longer_chunks_first_6_clips"]
    met = {
        "codes_identical_to_upstream": encoder["all_identical"],
        "decoder_parity": worst <= GOALS["decoder_parity_atol"],
        "fp32_over_eager": figures["fp32"]["speed_up_over_eager"] >= GOALS["fp32_over_eager_min"],
        "int8_over_fp32": figures["int8"]["speed_up_over_fp32"] >= GOALS["int8_over_fp32_min"],
        "int8_pesq": figures["int8"]["metrics_vs_fp32"]["pesq"] >= GOALS["int8_pesq_min"],
        "stream_240ms": sweep["240ms"]["stream_over_whole"] <= GOALS["stream_240ms_over_whole_max"],
    }
    spec = built["simplify"].manifest.model
    result = {
        "benchmark": "Qwen3-TTS-Tokenizer-12Hz (qwen-tts 0.1.1 classes, published configuration) "
        f"on CPU: ONNX Runtime and PyTorch eager, {args.threads} threads, one run",
        "machine": bench_machine(),
        "weights": "seeded (no checkpoint): quality compares precisions and decode paths only",
        "network": spec.network,
        **base.built_figures(spec, args.data, len(clips), outcomes),
        "encoder": encoder,
        "parity": parity,
        "precisions": figures,
        "streaming": stream,
        "past_upstream_300_frame_chunks": chunks,
        "long_audio_memory": memory,
        "goals": GOALS,
        "met": met,
        "wall_seconds": time.perf_counter() - began,
    }
    write_result(args.out, result, ("met",))


if __name__ == "__main__":
    sys.exit(main())
