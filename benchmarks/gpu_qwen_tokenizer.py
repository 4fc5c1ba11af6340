"""Qwen3-TTS-Tokenizer-12Hz (the `qwen-tts` classes, the recipe's published configuration, seeded
weights) on a GPU: decode FP32, FP16 and BF16 eager, the whole decoder compiled by AOTInductor
(--aoti), and the one-frame streaming step eager and replayed as a CUDA graph.

Standalone on the lent machine (torch, numpy, scipy; no network, no pydantic): transformers
4.57.3, qwen-tts 0.1.1 and their pure imports travel in --vendor, made here with

    pip install --target benchmarks/gpu_vendor --no-deps --python-version 3.X \
        --only-binary=:all: --platform manylinux2014_x86_64 transformers==4.57.3 \
        qwen-tts==0.1.1 huggingface_hub==0.36.2 tokenizers==0.22.2 safetensors regex pyyaml

(X: the machine's Python) and carried with the call (`carry: ["benchmarks/gpu_vendor"]`, about
30 MB). speedy's torch-only files (`qwen_codec_modules`, `qwen_codec_step`, `codec_12hz_model`)
are loaded from their paths. For each of the 4 clips of speedy/data/clips (resampled to 24 kHz):
FP32 codes, then each decode's RTF (median of repeats, synchronized), the stream's per-frame
latency, peak GPU memory, and FP16 / BF16 / AOTI / streamed audio against FP32 eager (SNR,
log-mel L1). FP32 is IEEE FP32 (no TF32). Writes JSON to --out.

CPU smoke test: python benchmarks/gpu_qwen_tokenizer.py --device cpu --repeats 1 \
    --recipe tests/fixtures/qwen_tokenizer_12hz_tiny.yaml
"""

import argparse
import copy
import importlib
import importlib.util
import json
import sys
import time
from pathlib import Path

import gpu_codec as common  # the codec GPU benchmark's clips, metrics, clock and device facts
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ROOT / "speedy" / "families"
RECIPE = ROOT / "recipes" / "qwen3_tts_tokenizer_12hz.yaml"
TOKENIZER = "qwen_tts.core.tokenizer_12hz"
OUT_NAME = "gpu_qwen_tokenizer.json"


def from_file(name: str):
    """speedy.families.<name>, loaded from its file (not through the package __init__)."""
    full = f"speedy.families.{name}"
    if full not in sys.modules:
        spec = importlib.util.spec_from_file_location(full, FAMILIES / f"{name}.py")
        sys.modules[full] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[full])
    return sys.modules[full]


def upstream_modules():
    """The 12 Hz tokenizer's modules without running qwen_tts's package __init__ files."""
    for package in ("qwen_tts", "qwen_tts.core"):
        spec = importlib.util.find_spec(package)
        sys.modules.setdefault(package, importlib.util.module_from_spec(spec))
    modeling = importlib.import_module(f"{TOKENIZER}.modeling_qwen3_tts_tokenizer_v2")
    configuration = importlib.import_module(f"{TOKENIZER}.configuration_qwen3_tts_tokenizer_v2")
    return modeling, configuration


def build(recipe: Path):
    import yaml

    network = dict(yaml.safe_load(recipe.read_text())["network"])
    seed = network.pop("seed", 0)
    modeling, configuration = upstream_modules()
    modules = from_file("qwen_codec_modules")
    torch.manual_seed(seed)
    model = modeling.Qwen3TTSTokenizerV2Model(configuration.Qwen3TTSTokenizerV2Config(**network))
    residual = modeling.Qwen3TTSTokenizerV2DecoderDecoderResidualUnit
    modules.seed_weights(model, network["encoder_valid_num_quantizers"], residual)
    return model.eval(), modeling, modules


def streamed(step, codes: torch.Tensor, states: list[torch.Tensor], clock) -> tuple:
    """One frame per call, each copied to the host; the audio and each call's seconds."""
    pieces, seconds = [], []
    for frame in range(codes.shape[-1]):
        begin = time.perf_counter()
        audio, *states = step(codes[..., frame : frame + 1], *states)
        pieces.append(audio.float().cpu())
        seconds.append(time.perf_counter() - begin)
    clock.sync()
    return torch.cat(pieces, -1)[0, 0].numpy(), seconds


def cuda_graph_stream(step, codes: torch.Tensor, states: list[torch.Tensor]) -> tuple:
    """The one-frame step captured once as a CUDA graph, replayed per frame with the state
    copied back into its input buffers."""
    frame_in = codes[..., :1].clone()
    state_in = [s.clone() for s in states]
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up outside the capture
        step(frame_in, *state_in)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        audio_out, *state_out = step(frame_in, *state_in)
    pieces, seconds = [], []
    for frame in range(codes.shape[-1]):
        begin = time.perf_counter()
        frame_in.copy_(codes[..., frame : frame + 1])
        graph.replay()
        pieces.append(audio_out.float().cpu())
        for buffer, value in zip(state_in, state_out, strict=True):
            buffer.copy_(value)
        seconds.append(time.perf_counter() - begin)
    return torch.cat(pieces, -1)[0, 0].numpy(), seconds


def aoti_decoder(decoder, codes: torch.Tensor, out: Path):
    """The whole decoder compiled by AOTInductor with a dynamic frames dim; its runner."""
    frames = torch.export.Dim("frames", min=2, max=1500)
    program = torch.export.export(
        decoder, (codes,), dynamic_shapes=({2: frames},),
        prefer_deferred_runtime_asserts_over_guards=True,
    )  # fmt: skip
    path = torch._inductor.aoti_compile_and_package(program, package_path=str(out))
    return torch._inductor.aoti_load_package(path)


def timed_decode(
    decoder, codes: list, reference: list, clock, repeats: int, audio_s: float
) -> dict:
    """RTF of `decoder` over the clips' codes (median of repeats each) and its audio against
    the FP32 eager reference."""
    with torch.no_grad():
        seconds = sum(clock.median(lambda c=c: decoder(c), repeats) for c in codes)
        audio = [decoder(c).float().cpu()[0, 0].numpy() for c in codes]
        peak = clock.peak_mb(lambda: decoder(codes[0]))
    return {
        "rtf": seconds / audio_s,
        "peak_mb": peak,
        "snr_db_vs_fp32": min(common.snr_db(r, a) for r, a in zip(reference, audio, strict=True)),
        "log_mel_l1_vs_fp32": max(
            common.log_mel_l1(r, a, 24_000) for r, a in zip(reference, audio, strict=True)
        ),
    }


def timed_stream(run, codes: list, reference: list, audio_s: float) -> dict:
    """Per-call times of `run` (one frame per call) over the clips, and its audio against the
    FP32 eager whole decode."""
    run(codes[0][..., :4])  # warm-up
    calls, error = [], 0.0
    for clip, whole in zip(codes, reference, strict=True):
        made, seconds = run(clip)
        calls += seconds
        error = max(error, float(np.abs(made - whole).max()))
    return {
        "rtf": sum(calls) / audio_s,
        "call_ms_p50": round(1000 * common.percentile(calls, 50), 3),
        "call_ms_p95": round(1000 * common.percentile(calls, 95), 3),
        "first_chunk_ms": round(1000 * calls[0], 3),
        "max_abs_vs_whole": error,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=RECIPE)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--vendor", type=Path, default=ROOT / "benchmarks" / "gpu_vendor")
    parser.add_argument(
        "--aoti", action="store_true", help="also AOTInductor (on this CPU its compile of the "
        "tiny decoder had not finished after 6 minutes: try it when device time allows)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / OUT_NAME)
    args = parser.parse_args()
    if args.vendor.is_dir():
        sys.path.insert(0, str(args.vendor))
    device = torch.device(args.device)
    precision = common.ieee_fp32()
    clock = common.Clock(device)
    began = time.perf_counter()
    model, modeling, modules = build(args.recipe)
    model = model.to(device)
    clips = []
    for path in sorted(common.CLIPS.glob("*.wav")):
        audio, rate = common.read_wav(path)
        audio = common.resample(audio, rate, 24_000)
        clips.append(audio[: audio.size // 1920 * 1920].astype(np.float32))
    audio_s = sum(c.size for c in clips) / 24_000
    fp32 = modules.Decoder(model)
    with torch.no_grad():
        encoder = modules.Encoder(model)
        codes = [encoder(torch.from_numpy(c)[None, None].to(device)) for c in clips]
        reference = [fp32(c).float().cpu()[0, 0].numpy() for c in codes]
    decodes = {"eager_fp32": timed_decode(fp32, codes, reference, clock, args.repeats, audio_s)}
    for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        if device.type == "cuda" or dtype == torch.bfloat16:
            reduced = modules.Decoder(copy.deepcopy(model).to(dtype))
            decodes[f"eager_{name}"] = timed_decode(
                reduced, codes, reference, clock, args.repeats, audio_s
            )
    if args.aoti:
        try:
            runner = aoti_decoder(fp32, codes[0], args.out.with_suffix(".pt2"))
            decodes["aoti_fp32"] = timed_decode(
                runner, codes, reference, clock, args.repeats, audio_s
            )
        except Exception as exc:  # recorded, not fatal: the other figures still stand
            first = str(exc).splitlines()[0][:300] if str(exc) else ""
            decodes["aoti_fp32"] = {"error": f"{type(exc).__name__}: {first}"}
    step = from_file("qwen_codec_step").DecoderStep(model.decoder, modeling)
    books = model.encoder_valid_num_quantizers

    def zeros() -> list[torch.Tensor]:
        return [torch.zeros(r.spec.concrete(1), device=device) for r in step.state_specs(books)]

    streams = {}
    with torch.no_grad():
        streams["eager_fp32_80ms"] = timed_stream(
            lambda c: streamed(step, c, zeros(), clock), codes, reference, audio_s
        )
        if device.type == "cuda":
            streams["cuda_graph_fp32_80ms"] = timed_stream(
                lambda c: cuda_graph_stream(step, c, zeros()), codes, reference, audio_s
            )
    recipe = args.recipe.resolve()
    result = {
        "benchmark": "Qwen3-TTS-Tokenizer-12Hz (qwen-tts classes, seeded weights) on "
        f"{args.device}: eager, AOTInductor and CUDA-graph decodes",
        "device": common.device_info(device),
        "fp32": precision,
        "recipe": str(recipe.relative_to(ROOT) if recipe.is_relative_to(ROOT) else recipe),
        "weights": "seeded (untrained): quality compares precisions and decode paths only",
        "clips": len(clips),
        "audio_seconds": audio_s,
        "decode": decodes,
        "stream": streams,
        "wall_seconds": time.perf_counter() - began,
    }
    common.write_json(args.out, result)
    print(json.dumps({"decode": decodes, "stream": streams}, indent=2))


if __name__ == "__main__":
    main()
