"""One copy of shared weights, measured on the mid GPT-TTS shape (seeded weights): disk, memory,
decode speed and codes.

The mid shape's export artifact stores the weights its prefill and decode graphs share once
(`speedy.weight_pool`). It is compiled for ONNX Runtime twice: `--ort-weights packed` (the
default: each graph prepacks its own copy for MLAS) and `--ort-weights shared` (one read-only
mapping of the file that both graphs read in place, unpacked). Then:

1. sizes: parameter bytes, the artifacts' bytes, and the bytes the graphs hold counted per graph
   (what they took before, each with its own copy);
2. memory, each artifact loaded in a process of its own (which imports no torch): RSS before
   loading (Python and speedy's runtime), after loading, after a first request (a short prompt
   and one code: every weight read once), the peak (VmHWM) over 200 greedy codes from 3 prompts
   (with their caches and logits), and PSS at the end;
3. one decode step at 50 and 500 cached codes, packed and shared taking turns in one process;
4. the 200 greedy codes of both compiled artifacts against the export's, on 3 prompts.

Writes benchmarks/results/shared_weights_cpu.json with machine info.

    python benchmarks/shared_weights.py [--threads 2] [--rounds 5]
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from speedy import runtime
from speedy.artifact import Artifact
from speedy.bench.machine import bench_machine
from speedy.machine import write_result
from speedy.onnx_io import model_bytes
from speedy.tasks import task_for
from speedy.tasks.speech_codes import Generation, SpeechCodes

ROOT = Path(__file__).resolve().parent

TARGETS = {"size_over_parameters_max": 1.05, "shared_resident_over_parameters_max": 1.15}
CODES = 200
WEIGHTS = ("packed", "shared")


def build(build_dir: Path, threads: int) -> dict[str, Artifact]:
    """The mid shape's torch and export artifacts and the export compiled both ways."""
    # imported here: the measuring child process stays free of torch
    from gpt_tts import recipe_file  # the mid shape's recipe

    from speedy.pipeline import make_stage, run_recipe
    from speedy.recipe import load_recipe
    from speedy.stages.base import reuse_or_execute

    with tempfile.TemporaryDirectory() as tmp:
        recipe = load_recipe(str(recipe_file("mid", Path(tmp))))
        outcomes, ctx = run_recipe(recipe, build_dir, threads=threads)
    found = {o.stage: o.artifact for o in outcomes}
    for weights in WEIGHTS:
        stage = make_stage("compile", {"backend": "ort", "ort_weights": weights})
        out = build_dir / recipe.name / f"ort_{weights}"
        found[weights], _ = reuse_or_execute(stage, found["export"], out, ctx)
    return found


def per_graph_bytes(artifact: Artifact) -> int:
    """The artifact's size with a copy of the shared weights per graph."""
    return sum(model_bytes(artifact.file(name)) for name in artifact.manifest.graphs)


def prompts(task: SpeechCodes) -> list[dict]:
    """Three prompts of the default data (short, mid, long)."""
    sentences = sorted(task.read_data(task.default_data, None), key=lambda s: s.ids.size)
    return [task.inputs(sentences[i]) for i in (0, len(sentences) // 2, -1)]


def memory_mb(field: str) -> float:
    """A field of /proc/self/status (VmRSS, VmHWM) or smaps_rollup (Pss), in MB."""
    for source in ("/proc/self/status", "/proc/self/smaps_rollup"):
        for line in Path(source).read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / 1e6
    raise KeyError(field)


def child(path: Path, threads: int) -> None:
    """Load one artifact, make one code, then generate from the prompts; print memory figures
    and the codes."""
    figures = {"before": memory_mb("VmRSS")}
    model = runtime.load(path, threads=threads)
    figures["loaded"] = memory_mb("VmRSS")
    task = task_for(model.manifest.model)
    first, *rest = prompts(task)
    task.generate(model, first, Generation(max_codes=1))
    figures["first_request"] = memory_mb("VmRSS")
    generation = Generation(max_codes=CODES)
    codes = [task.generate(model, p, generation)["codes"].tolist() for p in (first, *rest)]
    figures |= {"peak": memory_mb("VmHWM"), "pss": memory_mb("Pss")}
    print(json.dumps(figures | {"codes": codes}))


def in_process(path: Path, threads: int) -> dict:
    command = [sys.executable, __file__, "--child", str(path), "--threads", str(threads)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.splitlines()[-1])


def step_times(artifacts: dict[str, Artifact], threads: int, rounds: int) -> dict:
    """Median ms of one decode step per variant and cache length, the variants taking turns."""
    models = {w: runtime.load(artifacts[w].path, threads=threads) for w in WEIGHTS}
    task = task_for(models["packed"].manifest.model)
    times: dict[str, dict[int, list[float]]] = {w: {50: [], 500: []} for w in WEIGHTS}
    for _ in range(rounds):
        for length in (50, 500):
            for weights, model in models.items():
                times[weights][length].append(1000 * task.step_seconds(model, length, 5))
    return {w: {n: statistics.median(v) for n, v in by.items()} for w, by in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--build-dir", type=Path, default=ROOT.parent / "build")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "shared_weights_cpu.json")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.threads)
    artifacts = build(args.build_dir, args.threads)
    from speedy.families.network import build_network  # (torch: see `build`)

    network = build_network(artifacts["torch"].manifest.model)
    parameters = sum(p.numel() * p.element_size() for p in network.parameters())
    memory = {w: in_process(artifacts[w].path, args.threads) for w in ("export", *WEIGHTS)}
    codes = {w: memory[w].pop("codes") for w in memory}
    steps = step_times(artifacts, args.threads, args.rounds)
    mb = 1e6
    result = {
        "benchmark": "one copy of shared weights: mid GPT-TTS shape (seeded weights), prefill + "
        "decode, sizes, memory per process, decode step, codes",
        "threads": args.threads,
        "rounds": args.rounds,
        "targets": TARGETS,
        "parameter_mb": parameters / mb,
        "size_mb": {w: artifacts[w].size_bytes / mb for w in ("export", *WEIGHTS)},
        "per_graph_copies_mb": per_graph_bytes(artifacts["export"]) / mb,
        "size_over_parameters": artifacts["export"].size_bytes / parameters,
        "memory_mb": memory,
        "resident_over_parameters": {  # RSS added by loading and a first request
            w: (m["first_request"] - m["before"]) * mb / parameters for w, m in memory.items()
        },
        "peak_over_parameters": {
            w: (m["peak"] - m["before"]) * mb / parameters for w, m in memory.items()
        },
        "decode_ms": steps,
        "shared_over_packed": {n: steps["shared"][n] / steps["packed"][n] for n in (50, 500)},
        "codes_equal_export": {w: codes[w] == codes["export"] for w in WEIGHTS},
        "prompts": len(codes["export"]),
        "distinct_codes": [len(np.unique(c)) for c in codes["export"]],
        "machine": bench_machine(),
    }
    result["met"] = {
        "size": result["size_over_parameters"] <= TARGETS["size_over_parameters_max"],
        "shared_resident": result["resident_over_parameters"]["shared"]
        <= TARGETS["shared_resident_over_parameters_max"],
    }
    write_result(args.out, result, ["size_over_parameters", "resident_over_parameters", "met"])


if __name__ == "__main__":
    main()
