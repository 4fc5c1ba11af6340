"""What starting `speedy` costs: whole-process wall time of `speedy --help` and `speedy inspect`,
for this tree and an earlier commit (checked out in a temporary worktree), in turns.

Each command runs as a fresh interpreter (`python -c 'from speedy.cli import main; main()'`
from the tree's directory with the tree on PYTHONPATH, an editable install's finder set aside),
after one warm-up run; the median of --runs runs is reported, with whether torch was imported.
Writes benchmarks/results/cli_startup_cpu.json.

    python benchmarks/cli_startup.py [--before 016ce78] [--runs 9] [--artifact DIR]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from speedy.bench.machine import bench_machine
from speedy.machine import write_result

ROOT = Path(__file__).resolve().parent
PROBE = (  # an editable install's finder would import this tree's speedy whatever the path
    "import sys; sys.argv = ['speedy', *sys.argv[1:]]\n"
    "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in str(f.__module__)]\n"
    "from speedy.cli import main\n"
    "try:\n    main()\nexcept SystemExit:\n    pass\n"
    "sys.stderr.write('TORCH=%d' % ('torch' in sys.modules))"
)


def run_once(tree: Path, args: list[str]) -> tuple[float, bool]:
    """Seconds of one whole run of `speedy ARGS` from `tree`, and whether it imported torch."""
    env = os.environ | {"PYTHONPATH": str(tree)}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=tree,  # `python -c` puts the current directory first on the path
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - start, done.stderr.endswith("TORCH=1")


@contextmanager
def worktree(commit: str) -> Iterator[Path]:
    """The project at `commit`, checked out in a temporary directory."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tree"
        git = ["git", "-C", str(ROOT.parent), "worktree"]
        subprocess.run(
            [*git, "add", "--detach", str(path), commit], check=True, capture_output=True
        )
        try:
            yield path
        finally:
            subprocess.run([*git, "remove", "--force", str(path)], check=True)


def measure(trees: dict[str, Path], commands: dict[str, list[str]], runs: int) -> tuple[dict, dict]:
    """Seconds of each command from each tree, in turns, and whether it imported torch."""
    torch = {
        t: {c: run_once(path, args)[1] for c, args in commands.items()} for t, path in trees.items()
    }
    seconds: dict[str, dict[str, list[float]]] = {t: {c: [] for c in commands} for t in trees}
    for _ in range(runs):
        for name, args in commands.items():
            for tree, path in trees.items():
                seconds[tree][name].append(run_once(path, args)[0])
    return seconds, torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="016ce78", help="the commit to compare with")
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--artifact", default=str(ROOT.parent / "build/hifigan_v1/quantize"))
    args = parser.parse_args()
    commands = {"help": ["--help"], "inspect": ["inspect", args.artifact]}
    with worktree(args.before) as before:  # the first runs (torch's check) warm the caches
        seconds, torch = measure({"before": before, "after": ROOT.parent}, commands, args.runs)
    medians = {t: {c: statistics.median(v) for c, v in by.items()} for t, by in seconds.items()}
    result = {
        "machine": bench_machine(),
        "before_commit": args.before,
        "runs": args.runs,
        "median_seconds": medians,
        "speedup": {c: medians["before"][c] / medians["after"][c] for c in commands},
        "imports_torch": torch,
        "seconds": seconds,
    }
    write_result(
        ROOT / "results" / "cli_startup_cpu.json", result, ["median_seconds", "imports_torch"]
    )


if __name__ == "__main__":
    main()
