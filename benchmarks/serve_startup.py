"""How long `speedy serve` takes from launch to its first answer, cold and warm: the `make serve`
artifacts (seeded Sambert, FP32 and mixed-INT8 HiFi-GAN V1), with a fresh cache directory (the
warm-up's features computed) and again with that cache filled; and once with an unwritable cache
directory, which must still start.
Each is a whole child process; the median of `--runs` is kept. `serving` below starts the server
of benchmarks/serve_load.py too.

    make run && speedy run sambert_zh_en
    python benchmarks/serve_startup.py [--runs 3]
"""

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from speedy.bench.machine import bench_machine
from speedy.machine import write_result

ROOT = Path(__file__).resolve().parent
ARTIFACTS = [
    "build/sambert_zh_en/simplify",
    "fp32=build/hifigan_v1/simplify",
    "int8=build/hifigan_v1/quantize",
]
UNWRITABLE = "/proc/speedy-cache"  # no one, root included, can make a directory there
HOST = "127.0.0.1"


@dataclass
class Server:
    """A `speedy serve` child process listening on `HOST:port`."""

    process: subprocess.Popen
    port: int
    host: str = HOST

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, timeout=60)

    def rss_mib(self) -> float:
        """The server's resident memory now (Linux /proc)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(kib) / 1024


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def answers(server: Server) -> bool:
    """Whether GET /health answers 200 (False: not listening yet)."""
    try:
        return server.get("/health").status_code == 200
    except requests.ConnectionError:
        return False


@contextmanager
def serving(
    args: list[str],
    env: dict[str, str] | None = None,
    start_s: float = 600.0,
    verb: tuple[str, ...] = ("serve",),
    kind: type[Server] = Server,
) -> Iterator[Server]:
    """`speedy serve ARGS` (or another `verb`, watched as a `kind` of server) in a child process
    (`env`: added to this one's), once it answers (its errors on stderr, its log dropped);
    SIGTERM to it afterwards."""
    port = free_port()
    command = [sys.executable, "-m", "speedy", *verb, *args, "--port", str(port)]
    environment = {**os.environ, **(env or {})}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=environment)
    server, deadline = kind(process, port), time.perf_counter() + start_s
    try:
        while not answers(server):
            if process.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError(f"`{' '.join(command)}` did not start ({process.poll()})")
            time.sleep(0.02)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(60)


def seconds_to_first_answer(cache: str) -> float:
    """Launch to the first 200 of /health, with `cache` as the cache directory."""
    start = time.perf_counter()
    with serving(ARTIFACTS, env={"SPEEDY_CACHE_DIR": cache}):
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
