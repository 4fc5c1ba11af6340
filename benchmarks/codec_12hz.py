"""codec_12hz at Mimi's published size (decoder ~51 M parameters, seeded weights) on this CPU with
ONNX Runtime, 2 threads, one run: the figures of issue 25's "Done when".

1. Encoder: FP32 ONNX codes against PyTorch's on every shared LJSpeech clip (22,050 Hz, resampled
   to 24 kHz): identical codes, and the encode RTF.
2. Decoder parity at the recipe's three lengths never traced (from the export and simplify
   stages' reports), and output length = 1,920 x frames.
3. Streaming: each clip's codes decoded whole (`decoder`) and streamed through `decoder_step` in
   80 ms chunks (one frame per call), taking turns clip by clip so that a busy machine shows in
   both; the streamed RTF against the whole one (target <= 1.25x), the first chunk's latency (aim
   < 100 ms), stream-vs-whole SNR (target >= 80 dB) with the state after the chunks compared with
   the state after one call over all frames; then longer chunks (160, 240, 400 ms).
4. Long audio: 40 s of codes decoded in one call against the task's chunked decode
   (`decoder_step`, 2 s chunks): seam SNR (target >= 60 dB); then 10 s and 10 min of codes decoded
   chunk by chunk into a WAV file, each in a fresh process: peak RSS ratio (target <= 1.2).
5. FP16 and INT8 (static Q/DQ) decoder artifacts from the quantize stage: PESQ-WB, SNR and log-mel
   distance of their resynthesis against the FP32 artifact on held-out clips (the 12 shared clips
   not shipped in speedy/data/clips, which calibrate INT8), and their decode RTF; INT8 also of the
   decoder_step graph, streamed at 80 ms against its own whole decode and against FP32.
6. Why streaming costs what it costs: ONNX Runtime's per-op kernel times of one 80 ms
   decoder_step call against the whole decode per frame, and the weight bytes each call reads.

The GPU figures (FP16 against FP32 on an H200) are benchmarks/results/gpu_codec_12hz.json
(benchmarks/gpu_codec.py); their headline is copied into this result.

    python benchmarks/codec_12hz.py [--data DIR] [--long-seconds S|0] [--no-quantize]
"""

import argparse
import collections
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from speedy import runtime
from speedy.artifact import Artifact
from speedy.audio.io import list_audio, read_audio
from speedy.bench.machine import bench_machine
from speedy.bench.memory import current_rss, peak_rss
from speedy.data_source import DEFAULT_CLIPS
from speedy.machine import write_result
from speedy.pipeline import make_stage, run_recipe
from speedy.quality import snr_db
from speedy.recipe import load_recipe
from speedy.stages.base import execute
from speedy.tasks import task_for
from speedy.tasks.codec import Codec

ROOT = Path(__file__).resolve().parent
SHARED_CLIPS = ROOT.parent.parent / "shared" / "data" / "ljspeech" / "wavs"
GPU_RESULT = ROOT / "results" / "gpu_codec_12hz.json"
TARGETS = {
    "stream_over_whole_rtf_max": 1.25,
    "first_chunk_ms_aim": 100.0,
    "stream_snr_db_min": 80.0,
    "long_seam_snr_db_min": 60.0,
    "long_rss_ratio_max": 1.2,
    "decoder_parity_atol": 1e-4,
}


def ms(seconds: float) -> float:
    return round(1000 * seconds, 2)


def state_difference(a: dict, b: dict) -> float:
    """Largest difference of two states' tensors, relative to each tensor's largest value."""
    return max(float(np.abs(a[k] - b[k]).max() / max(np.abs(b[k]).max(), 1e-3)) for k in a)


def encoder_check(built: dict, task: Codec, clips: list[Path]) -> tuple[dict, list[np.ndarray]]:
    """Codes of every clip from PyTorch and ONNX; the ONNX codes, for what follows."""
    reference = runtime.load(built["torch"].path)
    model = runtime.load(built["simplify"].path, threads=2)
    rows, codes, seconds, audio_seconds = [], [], 0.0, 0.0
    for path in clips:
        inputs = task.inputs(task.frames(read_audio(path, task.audio.sample_rate)))
        start = time.perf_counter()
        found = model["encoder"].run(inputs)["codes"]
        seconds += time.perf_counter() - start
        audio_seconds += inputs["audio"].size / task.audio.sample_rate
        expected = reference["encoder"].run(inputs)["codes"]
        rows.append(
            {
                "clip": path.stem,
                "frames": int(found.shape[-1]),
                "identical": bool(np.array_equal(found, expected)),
                "agreement": float(np.mean(found == expected)),
            }
        )
        codes.append(found)
    result = {
        "clips": rows,
        "all_identical": all(r["identical"] for r in rows),
        "frames": sum(r["frames"] for r in rows),
        "audio_seconds": audio_seconds,
        "onnx_encode_rtf": seconds / audio_seconds,
    }
    return result, codes


def parity_figures(built: dict) -> dict:
    out = {}
    for stage in ("export", "simplify"):
        report = built[stage].manifest.reports["parity"]
        out[stage] = {
            "passed": report["passed"],
            "atol": report["atol"],
            "decoder": [
                {"sizes": c["sizes"], "max_abs_error": c["max_abs_error"]["audio"]}
                for c in report["cases"]
                if c["graph"] == "decoder"
            ],
            "encoder_max_code_error": max(
                c["max_abs_error"]["codes"] for c in report["cases"] if c["graph"] == "encoder"
            ),
            "decoder_step_max_abs_error": max(
                max(c["max_abs_error"].values())
                for c in report["cases"]
                if c["graph"] == "decoder_step"
            ),
        }
    return out


def whole_and_streamed(model: runtime.Model, task: Codec, codes: list[np.ndarray]) -> dict:
    """Each clip decoded whole and streamed in 80 ms chunks (one frame per decoder_step call),
    taking turns clip by clip; the streams' final states against one call over all frames."""
    streamer = task.streamer(0.08)
    whole_s = stream_s = audio_s = 0.0
    first, snrs, lengths_ok, states = [], [], True, []
    for clip in codes:
        start = time.perf_counter()
        whole = model["decoder"].run({"codes": clip})["audio"]
        whole_s += time.perf_counter() - start
        lengths_ok &= whole.shape[-1] == 1920 * clip.shape[-1]
        audio_s += whole.size / task.audio.sample_rate
        pieces, state = [], None
        start = time.perf_counter()
        for audio, after in streamer.steps(model, clip):
            if not pieces:
                first.append(time.perf_counter() - start)
            pieces.append(audio)
            state = after
        stream_s += time.perf_counter() - start
        snrs.append(snr_db(whole.reshape(-1), np.concatenate(pieces, axis=-1).reshape(-1)))
        _, one_call = streamer.step(model, clip, streamer.start(model))
        states.append(state_difference(state.tensors, one_call.tensors))
    return {
        "audio_seconds": audio_s,
        "whole_rtf": whole_s / audio_s,
        "stream_80ms_rtf": stream_s / audio_s,
        "stream_over_whole": stream_s / whole_s,
        "first_chunk_ms": {
            "p50": ms(statistics.median(first)),
            "max": ms(max(first)),
            "min": ms(min(first)),
        },
        "stream_vs_whole_snr_db": {"min": min(snrs), "mean": statistics.mean(snrs)},
        "state_after_chunks_vs_one_call_max_rel_diff": max(states),
        "output_length_is_1920_x_frames": bool(lengths_ok),
    }


def streaming(model: runtime.Model, task: Codec, codes: list[np.ndarray]) -> dict:
    """80 ms streaming against the whole decode; then longer chunks (on the first 6 clips)."""
    result = whole_and_streamed(model, task, codes)
    sweep = {}
    for chunk_seconds in (0.16, 0.24, 0.4, 2.0):
        chunked = task.streamer(chunk_seconds)
        whole_t = chunk_t = 0.0
        for clip in codes[:6]:
            start = time.perf_counter()
            model["decoder"].run({"codes": clip})
            whole_t += time.perf_counter() - start
            start = time.perf_counter()
            for _ in chunked.chunks(model, clip):
                pass
            chunk_t += time.perf_counter() - start
        sweep[f"{int(chunk_seconds * 1000)}ms"] = {
            "frames_per_call": chunked.chunk,
            "stream_over_whole": chunk_t / whole_t,
        }
    return result | {"longer_chunks_first_6_clips": sweep}


def long_seam(model: runtime.Model, task: Codec, codes: np.ndarray, frames: int) -> dict:
    """One call over `frames` frames against the task's chunked (stateful) decode."""
    codes = codes[..., :frames]
    whole = model["decoder"].run({"codes": codes})["audio"]
    start = time.perf_counter()
    chunked = task.decode(model, codes, chunk=25)
    seconds = time.perf_counter() - start
    return {
        "frames": frames,
        "seconds_of_audio": frames * 0.08,
        "chunk_frames": 25,
        "snr_db": snr_db(whole.reshape(-1), chunked.reshape(-1)),
        "chunked_rtf": seconds / (frames * 0.08),
        "same_length": whole.shape == chunked.shape,
    }


def long_worker(artifact: Path, codes_file: Path, seconds: float, threads: int) -> None:
    """(Run in a fresh process.) Decode `seconds` of the tiled codes chunk by chunk into a WAV
    file; print peak RSS and timing as JSON."""
    model = runtime.load(artifact, threads=threads)
    task = task_for(model.manifest.model)
    assert isinstance(task, Codec)
    source = np.load(codes_file)
    frames = round(seconds * 12.5)
    codes = np.tile(source, (1, 1, -(-frames // source.shape[-1])))[..., :frames]
    streamer = task.streamer(2.0)  # 25 frames per decoder_step call
    before = current_rss()
    samples = 0
    start = time.perf_counter()
    with (
        tempfile.TemporaryDirectory() as tmp,
        sf.SoundFile(Path(tmp) / "out.wav", "w", 24_000, 1, "PCM_16") as sink,
    ):
        for audio in streamer.chunks(model, codes):
            sink.write(np.clip(audio.reshape(-1), -1.0, 1.0))
            samples += audio.size
    wall = time.perf_counter() - start
    print(
        json.dumps(
            {
                "audio_seconds": samples / 24_000,
                "rtf": wall / (samples / 24_000),
                "rss_before_stream": before,
                "rss_peak": peak_rss(),
            }
        )
    )


def long_memory(artifact: Path, codes: np.ndarray, long_seconds: float, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        codes_file = Path(tmp) / "codes.npy"
        np.save(codes_file, codes)
        runs = {}
        for seconds in (10.0, long_seconds):
            command = [sys.executable, __file__, "--long-worker", str(artifact)]
            command += ["--codes", str(codes_file), "--seconds", str(seconds)]
            command += ["--threads", str(threads)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            runs[f"{seconds:g}s"] = json.loads(done.stdout.splitlines()[-1])
    short, long = runs["10s"], runs[f"{long_seconds:g}s"]
    return runs | {"rss_peak_ratio": long["rss_peak"] / short["rss_peak"]}


def quantize_variants(
    built: dict,
    ctx,
    variants: dict[str, dict],
    out: Path,
    figures: Callable[[Artifact], dict],
) -> tuple[dict, dict[str, runtime.Model]]:
    """Each variant's quantize stage (its options) on the simplified artifact: per variant its
    graphs, build time, quality against FP32 (the stage's report) and the caller's `figures`;
    and the loaded models, FP32 first."""
    models = {"fp32": runtime.load(built["simplify"].path, threads=2)}
    result = {}
    for name, options in variants.items():
        start = time.perf_counter()
        artifact = execute(
            make_stage("quantize", options), built["simplify"], out / name, ctx, True
        )
        quality = artifact.manifest.reports["quality"]
        result[name] = {
            "graphs": options["graphs"],
            "build_seconds": time.perf_counter() - start,
            "metrics_vs_fp32": quality["metrics"],
            "examples": quality["examples"],
            **figures(artifact),
        }
        models[name] = runtime.load(artifact.path, threads=2)
    return result, models


def quantized(built: dict, ctx, codes: list[np.ndarray], out: Path) -> dict:
    """FP16 and INT8 decoder artifacts (INT8: the decoder_step graph too): quality against FP32
    (the stage's report, whole decode), decode RTF, and INT8 streaming against INT8 whole."""
    variants = {
        "fp16": {"graphs": ["decoder"], "precision": "fp16"},
        "int8": {
            "graphs": ["decoder", "decoder_step"],
            "precision": "int8",
            "method": "minmax",
            "calib_size": 16,
            "exact_stream": False,  # INT8 activations (exact_stream.py: the default)
        },
    }
    result, models = quantize_variants(
        built,
        ctx,
        variants,
        out,
        lambda artifact: {
            "calibration_overlap": artifact.manifest.reports["quality"]["calibration_overlap"],
            "size_ratio": artifact.manifest.reports["quantize"]["decoder"]["size_ratio"],
        },
    )
    seconds = dict.fromkeys(models, 0.0)
    audio_seconds = sum(c.shape[-1] for c in codes) * 0.08
    for clip in codes:  # the precisions take turns on every clip
        for name, model in models.items():
            start = time.perf_counter()
            model["decoder"].run({"codes": clip})
            seconds[name] += time.perf_counter() - start
    for name in models:
        result.setdefault(name, {})["decode_rtf"] = seconds[name] / audio_seconds
    task = ctx.task
    int8_stream = whole_and_streamed(models["int8"], task, codes)
    streamed = np.concatenate(
        [np.concatenate(list(task.streamer(0.08).chunks(models["int8"], c)), -1) for c in codes],
        axis=-1,
    ).reshape(-1)
    reference = np.concatenate(
        [models["fp32"]["decoder"].run({"codes": c})["audio"] for c in codes], axis=-1
    ).reshape(-1)
    int8_stream["vs_fp32_whole"] = task.compare(
        {"audio": reference[None, None]}, {"audio": streamed[None, None]}, ("snr", "pesq", "mel")
    )
    result["int8"]["streaming"] = int8_stream
    return result


def op_times(path: Path, feeds: dict, calls: int) -> tuple[dict[str, float], float]:
    """ONNX Runtime's kernel milliseconds per op type and in all, per call (2 threads)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        session.run(None, feeds)  # warm-up, counted below as one more call
        for _ in range(calls):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    by_op: collections.Counter = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += event["dur"] / 1000 / (calls + 1)
    return {op: round(v, 3) for op, v in by_op.most_common(10)}, sum(by_op.values())


def breakdown(built: dict, model: runtime.Model, task: Codec, clip: np.ndarray) -> dict:
    """Kernel time of one 80 ms step call (a state 20 frames in) against the whole decode of
    `clip` per frame; bytes of weights each call reads."""
    streamer = task.streamer(0.08)
    state = streamer.start(model)
    for frame in range(20):
        _, state = streamer.step(model, clip[..., frame : frame + 1], state)
    step_feeds = {"codes": clip[..., 20:21], **state.tensors}
    step_ops, step_ms = op_times(built["simplify"].file("decoder_step"), step_feeds, 10)
    whole_ops, whole_ms = op_times(built["simplify"].file("decoder"), {"codes": clip}, 2)
    frames = clip.shape[-1]
    weights = sum(
        (built["simplify"].path / f).stat().st_size
        for f in built["simplify"].manifest.graphs["decoder_step"].files
    )
    return {
        "step_kernel_ms_per_80ms_call": round(step_ms, 2),
        "whole_kernel_ms_per_frame": round(whole_ms / frames, 2),
        "step_top_ops_ms": step_ops,
        "whole_top_ops_ms_per_frame": {k: round(v / frames, 3) for k, v in whole_ops.items()},
        "decoder_step_file_bytes": weights,
        "whole_clip_frames": frames,
    }


def built_figures(spec, data: Path, clips: int, outcomes) -> dict:
    """What both codec benchmarks record of the built codec: its task settings (the state
    tensors counted), the clips it ran on, and each stage's build seconds."""
    return {
        "task_settings": {k: v for k, v in spec.task_settings.items() if k != "state"},
        "state_tensors": len(spec.task_settings["state"]),
        "data": {"dir": str(data), "clips": clips, "resampled_to": 24_000},
        "build_seconds": {o.stage: o.seconds for o in outcomes},
    }


def held_out_clips(directory: Path, target: Path) -> Path:
    """`target` holding links to the clips of `directory` not shipped with speedy."""
    target.mkdir(parents=True, exist_ok=True)
    shipped = {p.name for p in list_audio(DEFAULT_CLIPS)}
    for path in list_audio(directory):
        if path.name not in shipped:
            (target / path.name).symlink_to(path)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_CLIPS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--long-seconds", type=float, default=600.0)
    parser.add_argument("--no-quantize", action="store_true")
    parser.add_argument("--build-dir", type=Path, default=ROOT.parent / "build")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "codec_12hz_cpu.json")
    parser.add_argument("--long-worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--codes", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.long_worker:
        long_worker(args.long_worker, args.codes, args.seconds, args.threads)
        return

    import torch

    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        held_out = held_out_clips(args.data, Path(tmp) / "held_out")
        outcomes, ctx = run_recipe(load_recipe("codec_12hz"), args.build_dir, data=held_out)
        built = {o.stage: o.artifact for o in outcomes}
        task = ctx.task
        assert isinstance(task, Codec)
        clips = list_audio(args.data)
        encoder, codes = encoder_check(built, task, clips)
        model = runtime.load(built["simplify"].path, threads=args.threads)
        stream = streaming(model, task, codes)
        joined = np.concatenate(codes, axis=-1)
        seam = long_seam(model, task, joined, 500)
        why = breakdown(built, model, task, codes[1])
        del model
        memory = None
        if args.long_seconds:
            memory = long_memory(built["simplify"].path, joined, args.long_seconds, args.threads)
        shipped = {p.name for p in list_audio(DEFAULT_CLIPS)}
        held = [c for c, p in zip(codes, clips, strict=True) if p.name not in shipped]
        precisions = None if args.no_quantize else quantized(built, ctx, held, Path(tmp) / "q")
    spec = built["simplify"].manifest.model
    gpu = json.loads(GPU_RESULT.read_text()) if GPU_RESULT.is_file() else None
    parity = parity_figures(built)
    worst_decoder = max(c["max_abs_error"] for c in parity["simplify"]["decoder"])
    met = {
        "codes_identical": encoder["all_identical"],
        "decoder_parity": worst_decoder <= TARGETS["decoder_parity_atol"],
        "output_length": stream["output_length_is_1920_x_frames"],
        "stream_snr": stream["stream_vs_whole_snr_db"]["min"] >= TARGETS["stream_snr_db_min"],
        "long_seam": seam["snr_db"] >= TARGETS["long_seam_snr_db_min"],
        "stream_cost": stream["stream_over_whole"] <= TARGETS["stream_over_whole_rtf_max"],
        "first_chunk": stream["first_chunk_ms"]["p50"] < TARGETS["first_chunk_ms_aim"],
        "long_rss": None
        if memory is None
        else memory["rss_peak_ratio"] <= TARGETS["long_rss_ratio_max"],
    }
    result = {
        "benchmark": "codec_12hz (Mimi's published size, seeded weights) on CPU: ONNX Runtime, "
        f"{args.threads} threads, one run",
        "machine": bench_machine(),
        "weights": "seeded (untrained): quality compares precisions and decode paths only",
        "network": spec.network or "mimi (the family's defaults)",
        **built_figures(spec, args.data, len(clips), outcomes),
        "encoder": encoder,
        "parity": parity,
        "streaming": stream,
        "long_audio_seam": seam,
        "long_audio_memory": memory,
        "precisions": precisions,
        "streaming_cost_breakdown": why,
        "gpu_h200": None
        if gpu is None
        else {
            "file": str(GPU_RESULT.relative_to(ROOT.parent)),
            "decode": gpu["decode"],
            "quality": gpu["quality"],
        },
        "targets": TARGETS,
        "met": met,
        "wall_seconds": time.perf_counter() - began,
    }
    write_result(args.out, result, ("met",))


if __name__ == "__main__":
    main()
