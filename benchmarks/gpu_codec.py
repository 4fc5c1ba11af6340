"""codec_12hz (seeded weights) on a GPU: encode real speech, decode FP32 and FP16, whole and
streamed (DecoderStep, one 80 ms frame per call).

Standalone: torch, numpy, scipy and the standard library, plus speedy/families/
codec_12hz_model.py loaded from its file (the `speedy.families` package's __init__ needs
pydantic, which the GPU machine lacks). Reads the 4 clips of speedy/data/clips (22,050 Hz 16-bit
PCM, with `wave`), resamples them to 24 kHz (scipy.signal.resample_poly), encodes each in FP32,
then decodes the codes with an FP32 and an FP16 copy of the model: the whole utterance in one
call, and streamed frame by frame. Reports the RTF of each (warm-up, synchronize, median of
repeats), the first chunk's latency, peak GPU memory, streamed-vs-whole parity, and FP16
against FP32 (waveform SNR, log-mel L1 computed in numpy). FP32 runs as IEEE FP32 (no TF32).
The weights are seeded, not trained: quality figures compare precisions and decode paths, not
the codec's fidelity. Writes JSON to --out and prints a summary table.

    python benchmarks/gpu_codec.py [--shape mimi|tiny] [--device cuda|cpu] [--repeats N]
        [--audio-dir DIR] [--out PATH]

CPU smoke test: python benchmarks/gpu_codec.py --shape tiny --device cpu --repeats 1
"""

import argparse
import copy
import importlib.util
import json
import platform
import statistics
import subprocess
import sys
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy.signal import resample_poly

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
CLIPS = ROOT / "speedy" / "data" / "clips"
MODULE = ROOT / "speedy" / "families" / "codec_12hz_model.py"


def load_codec():
    """speedy.families.codec_12hz_model, from its file (not through the package __init__)."""
    name = "speedy.families.codec_12hz_model"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, MODULE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


codec = load_codec()


# ----------------------------------------------------------------------------------------------
# Audio


def write_json(path: Path, result: dict) -> None:
    """A GPU benchmark's result as JSON (speedy's own writer needs packages the GPU machine
    lacks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """16-bit PCM WAV -> float32 mono in [-1, 1), sample rate."""
    with wave.open(str(path), "rb") as f:
        if f.getsampwidth() != 2:
            raise ValueError(f"{path}: not 16-bit PCM")
        data = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2").astype(np.float32)
        channels, rate = f.getnchannels(), f.getframerate()
    return data.reshape(-1, channels).mean(axis=1) / 32768.0, rate


def write_wav(path: Path, audio: np.ndarray, rate: int) -> None:
    """float audio -> 16-bit PCM mono WAV (clipped to [-1, 1])."""
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out:
        return audio
    gcd = np.gcd(rate_in, rate_out)
    return resample_poly(audio, rate_out // gcd, rate_in // gcd).astype(np.float32)


def mel_filters(rate: int, n_fft: int, bands: int, fmin: float = 0.0) -> np.ndarray:
    """Triangular filters on the HTK mel scale, [bands, n_fft // 2 + 1]."""

    def mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(fmin), mel(rate / 2), bands + 2))
    bins = np.linspace(0, rate / 2, n_fft // 2 + 1)
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - low) / (centre - low)
    falling = (high - bins) / (high - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


def log_mel(audio: np.ndarray, rate: int, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    """Natural-log mel power spectrogram (80 bands, Hann window), [frames, 80]."""
    audio = np.asarray(audio, np.float64)
    audio = np.pad(audio, (n_fft // 2, n_fft // 2), mode="reflect")
    count = 1 + (len(audio) - n_fft) // hop
    index = np.arange(n_fft)[None, :] + hop * np.arange(count)[:, None]
    spectrum = np.abs(np.fft.rfft(audio[index] * np.hanning(n_fft), axis=1)) ** 2
    return np.log(np.maximum(spectrum @ mel_filters(rate, n_fft, 80).T, 1e-5))


def log_mel_l1(reference: np.ndarray, actual: np.ndarray, rate: int) -> float:
    """Mean |log-mel difference| (natural log units)."""
    return float(np.mean(np.abs(log_mel(reference, rate) - log_mel(actual, rate))))


def snr_db(reference: np.ndarray, actual: np.ndarray) -> float:
    reference, actual = np.asarray(reference, np.float64), np.asarray(actual, np.float64)
    error = float(np.sum((reference - actual) ** 2))
    return float("inf") if error == 0 else float(10 * np.log10(np.sum(reference**2) / error))


# ----------------------------------------------------------------------------------------------
# Device and timing


def device_info(device: torch.device) -> dict:
    info = {"torch": torch.__version__, "numpy": np.__version__}
    info["python"] = platform.python_version()
    if device.type != "cuda":
        name = platform.processor() or platform.machine()
        return info | {"name": name, "threads": torch.get_num_threads()}
    props = torch.cuda.get_device_properties(device)
    try:
        driver = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, check=False, timeout=30,
        ).stdout.strip().splitlines()[0]  # fmt: skip
    except (OSError, IndexError, subprocess.SubprocessError):
        driver = None
    return info | {
        "name": props.name,
        "compute_capability": f"{props.major}.{props.minor}",
        "memory_gib": round(props.total_memory / 2**30, 1),
        "multiprocessors": props.multi_processor_count,
        "driver": driver,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }


def ieee_fp32() -> dict:
    """No TF32 in FP32 matmuls and convolutions; what was set."""
    try:  # torch >= 2.9
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        torch.backends.cudnn.conv.fp32_precision = "ieee"
        return {"matmul": "ieee", "conv": "ieee"}
    except AttributeError:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        return {"allow_tf32": False}


class Clock:
    def __init__(self, device: torch.device) -> None:
        self.device = device

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def time(self, work: Callable[[], object]) -> float:
        self.sync()
        start = time.perf_counter()
        work()
        self.sync()
        return time.perf_counter() - start

    def median(self, work: Callable[[], object], repeats: int, warmup: int = 1) -> float:
        for _ in range(warmup):
            work()
        return statistics.median(self.time(work) for _ in range(repeats))

    def peak_mb(self, work: Callable[[], object]) -> float | None:
        """Peak memory torch's allocator held during `work`, in MB (None, and `work` not run,
        off CUDA)."""
        if self.device.type != "cuda":
            return None
        self.sync()
        torch.cuda.reset_peak_memory_stats(self.device)
        work()
        self.sync()
        return torch.cuda.max_memory_allocated(self.device) / 1e6


# ----------------------------------------------------------------------------------------------
# Decoding


def decode_whole(model, codes: list[torch.Tensor]) -> list[torch.Tensor]:
    return [model.decode(c) for c in codes]


def stream(model, codes: torch.Tensor, clock: Clock, chunk: int = 1) -> tuple[np.ndarray, list]:
    """Decode `chunk` frames per DecoderStep call; each chunk copied to the host (as a player
    would need it). Returns the audio and each call's wall time (seconds)."""
    state = model.initial_state(codes.shape[0])
    pieces, times = [], []
    for start in range(0, codes.shape[-1], chunk):
        begin = time.perf_counter()
        audio, state = model.decode_step(codes[..., start : start + chunk], state)
        pieces.append(audio.float().cpu())
        times.append(time.perf_counter() - begin)
    clock.sync()
    return torch.cat(pieces, dim=-1)[0, 0].numpy(), times


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("mimi", "tiny"), default="mimi")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, help="timed runs of each mode (5 on CUDA, 1 on CPU)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (CPU device)")
    parser.add_argument("--clips", type=Path, default=CLIPS)
    parser.add_argument(
        "--audio-dir", type=Path, help="write FP32 and FP16 decodes of one clip here (16-bit WAV)"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_codec_12hz.json"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible to torch: run on a GPU machine, or --device cpu")
    precision = ieee_fp32() if device.type == "cuda" else {}
    if device.type == "cpu":
        torch.set_num_threads(args.threads)  # more than the free cores: erratic stalls
    if args.repeats is None:
        args.repeats = 5 if device.type == "cuda" else 1
    clock = Clock(device)

    params = codec.mimi() if args.shape == "mimi" else codec.tiny()
    rate = params.sample_rate
    built = time.perf_counter()
    model32 = codec.build(params).to(device)
    model16 = copy.deepcopy(model32).half()
    build_seconds = time.perf_counter() - built

    names, clips = [], []
    for path in sorted(args.clips.glob("*.wav")):
        audio, clip_rate = read_wav(path)
        names.append(path.stem)
        clips.append(resample(audio, clip_rate, rate))
    if not clips:
        raise SystemExit(f"no WAV clips in {args.clips}")
    audio_seconds = sum(len(c) for c in clips) / rate
    inputs = [torch.from_numpy(c)[None, None].to(device) for c in clips]

    with torch.inference_mode():
        # Encode (FP32): each clip on its own, padded to whole frames.
        encode = lambda: [model32.encode(x) for x in inputs]  # noqa: E731
        encode_seconds = clock.median(encode, args.repeats)
        encode_peak = clock.peak_mb(encode)
        codes = encode()
        frames = [c.shape[-1] for c in codes]
        decoded_seconds = sum(frames) * params.frame_samples / rate

        results: dict = {}
        outputs: dict = {}
        for label, model in (("fp32", model32), ("fp16", model16)):
            whole = lambda m=model: decode_whole(m, codes)  # noqa: E731
            whole_seconds = clock.median(whole, args.repeats)
            whole_peak = clock.peak_mb(whole)
            whole_audio = [a[0, 0].float().cpu().numpy() for a in whole()]

            stream(model, codes[0][..., :4], clock)  # warm-up
            runs = []
            for _ in range(args.repeats):
                started_stream = time.perf_counter()
                streamed = [stream(model, c, clock) for c in codes]
                runs.append((time.perf_counter() - started_stream, streamed))
            stream_seconds = statistics.median(r[0] for r in runs)
            streamed_audio = [s[0] for s in runs[-1][1]]
            chunk_times = [t for _, s in runs for _, ts in s for t in ts]
            first_chunks = [ts[0] for _, s in runs for _, ts in s]
            stream_peak = clock.peak_mb(lambda m=model: stream(m, codes[-1], clock))
            outputs[label] = {"whole": whole_audio, "stream": streamed_audio}
            results[label] = {
                "whole": {
                    "rtf": whole_seconds / decoded_seconds,
                    "seconds": whole_seconds,
                    "peak_mb": whole_peak,
                },
                "stream_80ms": {
                    "rtf": stream_seconds / decoded_seconds,
                    "seconds": stream_seconds,
                    "first_chunk_ms": 1e3 * statistics.median(first_chunks),
                    "chunk_ms_median": 1e3 * statistics.median(chunk_times),
                    "chunk_ms_p95": 1e3 * percentile(chunk_times, 95),
                    "chunks": sum(frames),
                    "peak_mb": stream_peak,
                },
            }

    def compare(reference: list, actual: list) -> dict:
        snrs = [snr_db(r, a) for r, a in zip(reference, actual, strict=True)]
        mels = [log_mel_l1(r, a, rate) for r, a in zip(reference, actual, strict=True)]
        return {"snr_db_min": min(snrs), "snr_db_mean": float(np.mean(snrs)),
                "log_mel_l1_max": max(mels), "log_mel_l1_mean": float(np.mean(mels))}  # fmt: skip

    quality = {
        "fp16_vs_fp32_whole": compare(outputs["fp32"]["whole"], outputs["fp16"]["whole"]),
        "fp16_vs_fp32_stream": compare(outputs["fp32"]["stream"], outputs["fp16"]["stream"]),
        "stream_vs_whole_fp32": compare(outputs["fp32"]["whole"], outputs["fp32"]["stream"]),
        "stream_vs_whole_fp16": compare(outputs["fp16"]["whole"], outputs["fp16"]["stream"]),
        "fp32_output_rms": float(np.sqrt(np.mean(np.concatenate(outputs["fp32"]["whole"]) ** 2))),
        "fp16_finite": bool(all(np.isfinite(a).all() for a in outputs["fp16"]["whole"])),
    }

    files = []
    if args.audio_dir is not None:
        pick = int(np.argmax([len(c) for c in clips]))  # the longest clip
        for label, audio in (
            ("input", clips[pick]),
            ("fp32", outputs["fp32"]["whole"][pick]),
            ("fp16", outputs["fp16"]["whole"][pick]),
        ):
            path = args.audio_dir / f"{names[pick]}_{args.shape}_{label}.wav"
            write_wav(path, audio, rate)
            files.append(str(path))

    result = {
        "benchmark": "codec_12hz on a GPU: encode real speech, decode FP32 / FP16, whole and "
        "streamed 80 ms (one frame per DecoderStep call)",
        "weights": "seeded (untrained): quality compares precisions and decode paths only",
        "shape": args.shape,
        "params": params.to_dict(),
        "parameters": codec.part_parameters(model32),
        "receptive_field": codec.receptive_field(params),
        "device": {"type": device.type} | device_info(device),
        "fp32_precision": precision,
        "repeats": args.repeats,
        "clips": [
            {"name": n, "seconds": len(c) / rate, "frames": f}
            for n, c, f in zip(names, clips, frames, strict=True)
        ],
        "audio_seconds": audio_seconds,
        "decoded_seconds": decoded_seconds,
        "build_seconds": build_seconds,
        "encode_fp32": {
            "rtf": encode_seconds / audio_seconds,
            "seconds": encode_seconds,
            "peak_mb": encode_peak,
        },
        "decode": results,
        "quality": quality,
        "audio_files": files,
        "wall_seconds": time.perf_counter() - started,
    }
    write_json(args.out, result)
    summary(result)
    print(f"wrote {args.out}")


def summary(result: dict) -> None:
    def mb(value) -> str:
        return "-" if value is None else f"{value:.0f}"

    device = result["device"]
    print(f"\ncodec_12hz {result['shape']} ({result['parameters']['decoder'] / 1e6:.1f} M decoder "
          f"params) on {device['name']}, {result['decoded_seconds']:.1f} s of audio, "
          f"median of {result['repeats']}")  # fmt: skip
    enc = result["encode_fp32"]
    print(f"{'mode':<22}{'RTF':>10}{'first chunk ms':>16}{'chunk p95 ms':>14}{'peak MB':>9}")
    print(f"{'encode fp32':<22}{enc['rtf']:>10.4f}{'':>16}{'':>14}{mb(enc['peak_mb']):>9}")
    for label, modes in result["decode"].items():
        whole, streamed = modes["whole"], modes["stream_80ms"]
        print(f"{'decode ' + label + ' whole':<22}{whole['rtf']:>10.4f}{'':>16}{'':>14}"
              f"{mb(whole['peak_mb']):>9}")  # fmt: skip
        print(f"{'decode ' + label + ' 80 ms':<22}{streamed['rtf']:>10.4f}"
              f"{streamed['first_chunk_ms']:>16.2f}{streamed['chunk_ms_p95']:>14.2f}"
              f"{mb(streamed['peak_mb']):>9}")  # fmt: skip
    q = result["quality"]
    for name in ("fp16_vs_fp32_whole", "fp16_vs_fp32_stream", "stream_vs_whole_fp32",
                 "stream_vs_whole_fp16"):  # fmt: skip
        print(f"{name:<22} SNR min {q[name]['snr_db_min']:6.1f} dB, "
              f"log-mel L1 max {q[name]['log_mel_l1_max']:.4f}")  # fmt: skip
    print(f"wall {result['wall_seconds']:.1f} s")


if __name__ == "__main__":
    main()
