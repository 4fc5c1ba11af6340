"""The same 16-client /v1/tts load (Sambert -> mixed-INT8 HiFi-GAN V1, one sentence) through
`speedy serve` and through Ray Serve (`speedy deploy ray --run`: Ray's HTTP proxy, speedy's
ingress, the model deployments) with 1 and then 2 vocoder replicas, one after another on this
machine: requests/s, p50/p95 latency, errors, and the resident memory of every process (the
server alone; Ray's whole local cluster: GCS, raylet, workers, proxy, controller, replicas).

Each setting serves with 1 thread per graph run; `speedy serve` runs 2 workers, the Ray ingress
2 as well, so the difference between `speedy serve` and Ray with 1 replica is the cost of Ray's
proxy and the hops between deployments. On 2 cores a second replica cannot add throughput.

    make run && speedy run sambert_zh_en     # build/hifigan_v1/quantize, build/sambert_zh_en/*
    python benchmarks/deploy_ray_load.py [--seconds 30] [--warmup 10]
"""

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

from serve_load import TEXT, drive
from serve_startup import Server, serving

from speedy.bench.machine import bench_machine
from speedy.machine import write_result

ROOT = Path(__file__).resolve().parent
CLIENTS = 16


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        found.append(current := todo.pop())
        todo.extend(children.get(current, []))
    return found


def rss_mib(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # it ended
        return 0.0
    kib = next((line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return int(kib) / 1024


@dataclass
class RayCluster(Server):
    """`speedy deploy ray --run` and the local Ray cluster it started."""

    def rss_mib(self) -> float:
        """Resident memory of the process and all its descendants."""
        return sum(map(rss_mib, descendants(self.process.pid)))

    def processes(self) -> int:
        return len(descendants(self.process.pid))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--acoustic", type=Path, default=Path("build/sambert_zh_en/simplify"))
    parser.add_argument("--vocoder", type=Path, default=Path("build/hifigan_v1/quantize"))
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "deploy_ray_load_cpu.json")
    args = parser.parse_args()
    served = [str(args.acoustic), f"vocoder={args.vocoder}"]
    common = ["--workers", "2", "--threads", "1"]
    tts = {"text": TEXT}
    phases: dict = {}
    print(f"speedy serve: {CLIENTS} clients, {args.seconds:g} s", flush=True)
    with serving([*served, *common]) as server:
        phases["speedy_serve"] = drive(server, CLIENTS, args.warmup, args.seconds, "/v1/tts", tts)
        phases["speedy_serve"]["processes"] = 1
    for replicas in (1, 2):
        print(f"Ray Serve, {replicas} vocoder replica(s): {CLIENTS} clients", flush=True)
        scaling = ["--replicas", f"vocoder={replicas}", "--replica-cpus", "0.5"]
        with (
            tempfile.TemporaryDirectory() as scratch,
            serving(
                [*served, *common, *scaling, "-o", f"{scratch}/app", "--run"],
                verb=("deploy", "ray"),
                kind=RayCluster,
            ) as cluster,
        ):
            phase = drive(cluster, CLIENTS, args.warmup, args.seconds, "/v1/tts", tts)
            phases[f"ray_{replicas}_replica"] = phase | {"processes": cluster.processes()}
    base, ray_one = phases["speedy_serve"], phases["ray_1_replica"]
    result = {
        "benchmark": "deploy_ray_load",
        "machine": bench_machine(),
        "weights": "Sambert: seeded (its recipe's); HiFi-GAN V1: the real checkpoint, mixed INT8",
        "artifacts": served,
        "clients": CLIENTS,
        "text": TEXT,
        "phases": phases,
        "ray_over_speedy_serve": {
            "requests_per_s": round(ray_one["requests_per_s"] / base["requests_per_s"], 3),
            "latency_p50": round(ray_one["latency_p50_s"] / base["latency_p50_s"], 3),
            "rss": round(ray_one["rss_end_mib"] / base["rss_end_mib"], 3),
        },
    }
    write_result(args.out, result, ("ray_over_speedy_serve",))


if __name__ == "__main__":
    main()
