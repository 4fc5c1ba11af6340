"""DNSMOS P.835 (speechmos's sig_bak_ovr.onnx) as a `generic` import: FP32, FP16, INT8, mixed.

A scorer, not a speech model: input [N, 144160] (9.01 s at 16 kHz), output [N, 3] (SIG, BAK,
OVRL). Runs the CLI as a user would: `speedy import --task generic --fill input_1=audio`, then
simplify, quantize (fp16, int8, mixed with the generic task's default budget tensor_snr>=30),
compile --backend ort of the INT8 one, and `speedy bench` of them all against the import on the
shipped clips (resampled to 16 kHz): latency, items/s, peak memory, size, load time and tensor
error against the FP32 import (no real-time factor: the outputs are scores, not audio). The
shipped file is opset 12; `speedy quantize` raises it to 13 for per-channel Q/DQ.
Writes benchmarks/results/dnsmos_generic_cpu.json.

    python benchmarks/dnsmos_generic.py [--repeat N] [--threads N]
"""

import argparse
import json
import os
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import speechmos

from speedy.machine import machine_info, write_result

ROOT = Path(__file__).resolve().parent
SHIPPED = Path(speechmos.__file__).parent / "dnsmos_models" / "sig_bak_ovr.onnx"


def speedy(*args: object) -> float:
    """Run `speedy ARGS` in its own process (replacing its output); the wall seconds it took."""
    start = time.perf_counter()
    command = [sys.executable, "-m", "speedy", *map(str, args), "--force"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def build(work: Path, threads: int) -> dict[str, float]:
    """Every artifact under `work`; the wall seconds of each stage."""
    t = ("--threads", threads)
    fill = ("--task", "generic", "--fill", "input_1=audio")
    simplified = work / "simplify"
    return {
        "import": speedy("import", SHIPPED, *fill, "-o", work / "fp32", *t),
        "simplify": speedy("simplify", work / "fp32", "-o", simplified, *t),
        "fp16": speedy("quantize", simplified, "--precision", "fp16", "-o", work / "fp16", *t),
        "int8": speedy(
            "quantize", simplified, "--precision", "int8", "--no-budget", "-o", work / "int8", *t
        ),
        "mixed": speedy("quantize", simplified, "--precision", "mixed", "-o", work / "mixed", *t),
        "int8_ort": speedy("compile", work / "int8", "--backend", "ort", "-o", work / "int8_ort"),
    }


def figures(measured: dict) -> dict:
    """Per artifact: the bench's speed, memory, size and error figures."""
    return {
        name: {
            "latency_p50_ms": m["speed"]["latency_p50_ms"],
            "latency_p95_ms": m["speed"]["latency_p95_ms"],
            "speedup_vs_fp32": m["ratios"]["speedup"],
            "items_per_second_b1": m["speed"]["items_per_second"]["1"],
            "rss_peak_mb": m["memory"]["rss_peak_bytes"] / 2**20,
            "size_mb": m["size_bytes"] / 1e6,
            "size_ratio": m["ratios"]["size"],
            "load_s": m["load_seconds"],
            "tensor_snr_db": m["quality"].get("tensor_snr"),
            "max_error": m["quality"].get("max_error"),
            "rel_error": m["quality"].get("rel_error"),
        }
        for name, m in measured.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--build-dir", type=Path, default=ROOT.parent / "build" / "dnsmos")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "dnsmos_generic_cpu.json")
    args = parser.parse_args()

    args.build_dir.mkdir(parents=True, exist_ok=True)
    stage_seconds = build(args.build_dir, args.threads)
    report = args.build_dir / "bench"
    names = ["fp32", "simplify", "fp16", "int8", "mixed", "int8_ort"]  # the import first
    speedy(
        "bench",
        *(args.build_dir / name for name in names),
        *("-o", report, "--repeat", args.repeat, "--threads", args.threads),
    )
    bench = json.loads((report / "bench.json").read_text())
    result = {
        "benchmark": "DNSMOS sig_bak_ovr.onnx imported as a generic model: FP32, FP16, INT8, "
        "mixed INT8, INT8 compiled for ORT (CPU), tensor error against the FP32 import",
        "machine": machine_info() | {"load_average_1_5_15min_at_end": os.getloadavg()},
        "model": {
            "source": f"speechmos {version('speechmos')}: dnsmos_models/sig_bak_ovr.onnx",
            "input": "input_1: float32[N, 144160] (9.01 s at 16 kHz)",
            "output": "Identity:0: float32[N, 3] (SIG, BAK, OVRL)",
        },
        "data": {"path": bench["data"]["path"], "clips": bench["data"]["files"]},
        "threads": args.threads,
        "repeat": args.repeat,
        "stage_wall_seconds_cli_process": stage_seconds,  # Python start and imports included
        "figures": figures(bench["artifacts"]),
    }
    write_result(args.out, result, ("figures",))


if __name__ == "__main__":
    main()
