"""How long `speedy serve` takes from launch to its first answer, cold and warm: the `make serve`
artifacts (seeded Sambert, FP32 and mixed-INT8 HiFi-GAN V1), with a fresh cache directory (the
vocoder's receptive field is derived through torch, the warm-up's features computed) and again
with that cache filled; and once with an unwritable cache directory, which must still start.
Each is a whole child process; the median of `--runs` is kept.

    make run && speedy run sambert_zh_en
    python benchmarks/serve_startup.py [--runs 3]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from speedy.bench.machine import bench_machine
from speedy.machine import write_result
from speedy.serve.client import spawn

ROOT = Path(__file__).resolve().parent
ARTIFACTS = [
    "build/sambert_zh_en/simplify",
    "fp32=build/hifigan_v1/simplify",
    "int8=build/hifigan_v1/quantize",
]
UNWRITABLE = "/proc/speedy-cache"  # no one, root included, can make a directory there


def seconds_to_first_answer(cache: str) -> float:
    """Launch to the first 200 of /health, with `cache` as the cache directory."""
    start = time.perf_counter()
    with spawn(ARTIFACTS, start_s=600, env={"SPEEDY_CACHE_DIR": cache}) as server:
        assert server.call("GET", "/health").status == 200
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "serve_startup_cpu.json")
    args = parser.parse_args()
    cold, warm = [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as cache:
            cold.append(seconds_to_first_answer(cache))
            warm.append(seconds_to_first_answer(cache))
    unwritable = [seconds_to_first_answer(UNWRITABLE) for _ in range(args.runs)]
    result = {
        "artifacts": ARTIFACTS,
        "runs": args.runs,
        "cold_s": [round(s, 2) for s in cold],
        "warm_s": [round(s, 2) for s in warm],
        "unwritable_cache_s": [round(s, 2) for s in unwritable],
        "median": {
            "cold_s": round(statistics.median(cold), 2),
            "warm_s": round(statistics.median(warm), 2),
            "unwritable_cache_s": round(statistics.median(unwritable), 2),
        },
        "machine": bench_machine(),
    }
    write_result(args.out, result, headline=["median"])


if __name__ == "__main__":
    main()
