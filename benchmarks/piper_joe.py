"""Piper en_US-joe-medium end to end: ORT FP32, FP16, mixed INT8 (and it compiled) side by side.

Builds (or reuses) the piper_joe recipe's artifacts (import, simplify, mixed INT8 from the stored
plan), an FP16 one, the mixed one compiled for ORT, and the mixed plan searched anew (for the
per-block sensitivities; minutes, once). Then, on the recipe's evaluation sentences with noise
scales 0: `speedy bench` (each artifact in its own process: RTF, size, memory, DNSMOS, PESQ-WB
against FP32) and a per-block profile of the FP32 graph (ONNX Runtime's own, node times summed
per quantization block), which with each block's sensitivity gives the ceiling of the mixed
plan: the speed-up were its INT8 blocks free. Writes benchmarks/results/piper_joe_cpu.json.

    python benchmarks/piper_joe.py [--repeat N] [--threads N]
"""

import argparse
import collections
import json
import os
import tempfile
from pathlib import Path

import onnx
import onnxruntime as ort

from speedy.artifact import Artifact
from speedy.bench.command import bench
from speedy.bench.options import BenchOptions
from speedy.machine import machine_info, write_result
from speedy.pipeline import make_stage, run_recipe
from speedy.quantize.graph import analyze
from speedy.recipe import load_recipe
from speedy.stages.base import StageContext, reuse_or_execute

ROOT = Path(__file__).resolve().parent
REFERENCE = "fp32"
TARGET = {"speedup": 1.3, "pesq": 4.0, "size_ratio": 0.45}


def variants(build: Path, threads: int) -> tuple[dict[str, Artifact], Artifact, StageContext]:
    """The artifacts compared, by name, the searched mixed artifact, and the stage context."""
    recipe = load_recipe("piper_joe")
    outcomes, ctx = run_recipe(recipe, build, threads=threads)
    built = {o.stage: o.artifact for o in outcomes}
    root = build / recipe.name

    def derived(name: str, stage: str, parent: Artifact, settings: dict) -> Artifact:
        return reuse_or_execute(make_stage(stage, settings), parent, root / name, ctx)[0]

    mixed = recipe.quantize.model_dump()
    found = {
        REFERENCE: built["simplify"],
        "fp16": derived("fp16", "quantize", built["simplify"], {"precision": "fp16"}),
        "mixed_int8": built["quantize"],
        "mixed_int8_ort": derived("compile", "compile", built["quantize"], {"backend": "ort"}),
    }
    searched = derived("searched", "quantize", built["simplify"], mixed | {"search": True})
    return found, searched, ctx


def block_times(artifact: Artifact, ctx: StageContext, threads: int) -> dict[str, float]:
    """Share of the FP32 graph's kernel time per quantization block (the rest: `other`), over
    the evaluation sentences, from ONNX Runtime's profile."""
    path = artifact.file("model")
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.enable_profiling = True
        options.profile_file_prefix = f"{tmp}/profile"
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feeds = [ctx.task.inputs(example) for example in ctx.examples]
        session.run(None, feeds[0])  # warm-up, profiled too, as every sentence is
        for feed in feeds:
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    info = analyze(onnx.load(str(path)), ctx.spec.sizes(), "block", feeds[0])
    block_of = {node: group for group, nodes in info.members.items() for node in nodes}
    times: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            node = event["name"].removesuffix("_kernel_time")
            times[block_of.get(node, "other")] += event["dur"]
    total = sum(times.values())
    return {block: us / total for block, us in times.most_common()}


def ceiling(table: list[dict], shares: dict[str, float], pesq: float) -> dict:
    """The FP32 time share of the blocks in INT8, and of those whose INT8 alone keeps PESQ-WB
    >= `pesq`, with the speed-up each would give were INT8 free."""
    chosen = [row["group"] for row in table if row["precision"] == "int8"]
    safe = [r["group"] for r in table if (r["sensitivity"] or {}).get("pesq", 0.0) >= pesq]
    bounds = {}
    for name, groups in (("int8_blocks", chosen), (f"blocks_pesq_alone_ge_{pesq}", safe)):
        share = sum(shares.get(group, 0.0) for group in groups)
        bounds[name] = {"blocks": groups, "time_share": share, "speedup_if_free": 1 / (1 - share)}
    return bounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--build-dir", type=Path, default=ROOT.parent / "build")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "piper_joe_cpu.json")
    args = parser.parse_args()

    found, searched, ctx = variants(args.build_dir, args.threads)
    report_dir = args.build_dir / "piper_joe" / "bench"
    names = [f"{name}={artifact.path}" for name, artifact in found.items()]
    bench(
        BenchOptions(
            artifacts=names,
            output=report_dir,
            repeat=args.repeat,
            threads=args.threads,
            force=True,
        )
    )
    measured = json.loads((report_dir / "bench.json").read_text())["artifacts"]
    figures = {
        name: {
            "rtf": m["speed"]["rtf"],
            "speedup_vs_fp32": m["ratios"]["speedup"],
            "size_mb": m["size_bytes"] / 1e6,
            "size_ratio": m["ratios"]["size"],
            "rss_peak_mb": m["memory"]["rss_peak_bytes"] / 2**20,
            "dnsmos_ovrl": m["quality"].get("dnsmos_ovrl"),
            "pesq_vs_fp32": m["quality"].get("pesq"),
            "mel_vs_fp32": m["quality"].get("mel"),
        }
        for name, m in measured.items()
    }
    mixed = figures["mixed_int8"]
    report = searched.manifest.reports["quantize"]["model"]
    shares = block_times(found[REFERENCE], ctx, args.threads)
    result = {
        "benchmark": "Piper en_US-joe-medium: ORT FP32 vs FP16 vs mixed INT8 (noise scales 0)",
        "machine": machine_info() | {"load_average_1_5_15min_at_end": os.getloadavg()},
        "data": {"texts": str(load_recipe("piper_joe").data_dir()), "sentences": len(ctx.examples)},
        "runs": ctx.task.runs_note,
        "threads": args.threads,
        "repeat": args.repeat,
        "artifacts": {name: str(artifact.path) for name, artifact in found.items()},
        "figures": figures,
        "target": TARGET,
        "target_met": {
            "speedup": mixed["speedup_vs_fp32"] >= TARGET["speedup"],
            "pesq": (mixed["pesq_vs_fp32"] or 0) >= TARGET["pesq"],
            "size_ratio": mixed["size_ratio"] <= TARGET["size_ratio"],
        },
        "fp32_time_share_per_block": shares,
        "sensitivity_alone_in_int8": {r["group"]: r["sensitivity"] for r in report["table"]},
        "searched_plan": {
            "int8": [r["group"] for r in report["table"] if r["precision"] == "int8"]
        },
        "ceiling": ceiling(report["table"], shares, TARGET["pesq"]),
    }
    write_result(args.out, result, ("figures", "target_met", "ceiling"))


if __name__ == "__main__":
    main()
