"""`speedy serve` under load, on loopback, bounded in time: HiFi-GAN V1 (vocode) and Sambert +
HiFi-GAN (tts) each driven by 16 concurrent clients, then streaming's first chunk, then overload.

Each loaded phase runs `--warmup` seconds of the same load first (ONNX Runtime's arenas grow to
the working set of concurrent runs of that request's shapes), then `--seconds` measured, against
one server process (its defaults: 2 workers sharing the sessions, 32 places in the queue, 1
thread per run). Clients are threads of this process with
one keep-alive connection each; they share the machine's cores with the server, as a sidecar
would. Figures: errors, p50/p95 latency, requests/s, RTF under load (the server's compute per
audio second, and the client's wall time per audio second), server RSS at the start and end of
each measured phase, and every 5 s; overload (64 clients) must give 503 with Retry-After, never
a timeout or a crash. Last, the page at / plays a sentence through A (--vocoder) and B (--page-b)
in headless Chromium, and its screenshot is kept beside the result.

    make run && speedy run sambert_zh_en      # build/hifigan_v1/* and build/sambert_zh_en/*
    python benchmarks/serve_load.py [--seconds 60] [--vocoder build/hifigan_v1/quantize]
"""

import argparse
import json
import statistics
import threading
import time
from pathlib import Path

from speedy.bench.machine import bench_machine
from speedy.machine import write_result
from speedy.recipe import DEFAULT_DATA
from speedy.serve.client import Client, ServerProcess, browser_page, play, spawn

ROOT = Path(__file__).resolve().parent
TEXT = "The fast model should still sound the same. 快速的模型听起来应该一样。"
CLIP = DEFAULT_DATA / "LJ001-0008.wav"  # 1.8 s
PAGE_TEXT = "The fast model should still sound the same, and now we can hear it side by side."
CLIENT_TIMEOUT_S = 60.0
RSS_EVERY_S = 5.0


def rss_mib(server: ServerProcess) -> float:
    """The server's resident memory now (Linux /proc)."""
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(kib) / 1024


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def drive(
    server: ServerProcess, clients: int, warmup: float, seconds: float, path: str, body
) -> dict:
    """`clients` threads sending `body` to `path` back to back for `warmup` + `seconds`; the
    outcomes of the requests sent after the warm-up, and the server's RSS every few seconds."""
    records: list[dict] = []
    lock = threading.Lock()
    began = time.perf_counter()
    measured, deadline = began + warmup, began + warmup + seconds

    def client() -> None:
        own = Client(server.host, server.port, CLIENT_TIMEOUT_S)
        own.keep = own.connect()
        while (start := time.perf_counter()) < deadline:
            try:
                reply = own.call("POST", path, body)
                record = {"status": reply.status, "headers": reply.headers}
            except TimeoutError:
                record = {"status": "timeout"}
            except OSError as exc:  # reset or refused: the server dropped the connection
                record = {"status": type(exc).__name__}
                own.keep = own.connect()
            record["seconds"] = time.perf_counter() - start
            if record["status"] == 503:
                time.sleep(min(1.0, float(record["headers"].get("retry-after", 1))))
            if start >= measured:
                with lock:
                    records.append(record)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    timeline: list[tuple[float, float]] = []  # (seconds into the phase, RSS)
    while any(thread.is_alive() for thread in threads):
        timeline.append((time.perf_counter() - began, rss_mib(server)))
        time.sleep(RSS_EVERY_S)
    for thread in threads:
        thread.join()
    rss_start = next((rss for t, rss in timeline if t >= warmup), timeline[-1][1])
    return summarize(records, clients, seconds, rss_start, rss_mib(server)) | {
        "warmup_s": warmup,
        "rss_every_5s_mib": [round(rss) for _, rss in timeline],
    }


def summarize(records: list[dict], clients: int, seconds: float, rss0: float, rss1: float) -> dict:
    ok = [r for r in records if r["status"] == 200]
    statuses: dict[str, int] = {}
    for r in records:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    latency = [r["seconds"] for r in ok]
    audio = [float(r["headers"]["x-audio-seconds"]) for r in ok]
    busy = [r for r in records if r["status"] == 503]
    return {
        "clients": clients,
        "measured_s": seconds,
        "requests": len(records),
        "statuses": statuses,
        "errors": len(records) - len(ok),
        "requests_per_s": round(len(ok) / seconds, 3),
        "latency_p50_s": percentile(latency, 0.5),
        "latency_p95_s": percentile(latency, 0.95),
        "audio_seconds_per_s": round(sum(audio) / seconds, 3),
        "rtf_compute_median": statistics.median(float(r["headers"]["x-rtf"]) for r in ok)
        if ok
        else None,
        "rtf_wall_median": statistics.median(s / a for s, a in zip(latency, audio, strict=True))
        if ok
        else None,
        "retry_after_s": sorted({int(r["headers"]["retry-after"]) for r in busy}),
        "rss_start_mib": round(rss0, 1),
        "rss_end_mib": round(rss1, 1),
        "rss_growth": round(rss1 / rss0, 4),
    }


def first_chunks(server: ServerProcess, voice: str, count: int) -> dict:
    """Streamed tts on an idle server: seconds to the first audio bytes, and to the last."""
    first, whole = [], []
    for _ in range(count):
        connection = server.connect()
        start = time.perf_counter()
        connection.request("POST", "/v1/tts?stream=1", json.dumps({"voice": voice, "text": TEXT}))
        response = connection.getresponse()
        received = len(response.read1(1 << 16))
        while received <= 44:  # the WAV header comes first, at once
            received += len(response.read1(1 << 16))
        first.append(time.perf_counter() - start)
        response.read()
        whole.append(time.perf_counter() - start)
    return {
        "requests": count,
        "first_chunk_median_s": statistics.median(first),
        "whole_median_s": statistics.median(whole),
    }


def screenshot(server: ServerProcess, path: Path) -> dict:
    """The page at / after playing one sentence through A and B: their timings, and a PNG."""
    with browser_page(f"http://{server.host}:{server.port}/") as page:
        page.fill("#text", PAGE_TEXT)
        timings = {side: play(page, side) for side in "ab"}
        page.screenshot(path=str(path), full_page=True)
    return {"timings": timings, "screenshot": path.name}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=10.0, help="load before measuring")
    parser.add_argument("--overload-seconds", type=float, default=20.0)
    parser.add_argument("--acoustic", type=Path, default=Path("build/sambert_zh_en/simplify"))
    parser.add_argument("--vocoder", type=Path, default=Path("build/hifigan_v1/quantize"))
    parser.add_argument(
        "--page-b", type=Path, default=Path("build/hifigan_v1/simplify"), help="B on the page"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "serve_load_cpu.json")
    args = parser.parse_args()

    settings = {"workers": 2, "queue": 32, "threads": 1}
    flags = [item for key, value in settings.items() for item in (f"--{key}", str(value))]
    served = [str(args.acoustic), str(args.vocoder), str(args.page_b)]
    with spawn([*served, *flags]) as server:
        catalog = server.call("GET", "/v1/models").json()
        voice = catalog["voices"][0]["name"]  # --acoustic + --vocoder
        vocode = f"/v1/vocode?model={next(iter(catalog['uploads']))}"  # --vocoder
        rss_ready = rss_mib(server)
        clip = CLIP.read_bytes()
        tts = {"voice": voice, "text": TEXT}
        phases = {}
        print(f"vocode: 16 clients, {args.seconds:g} s", flush=True)
        phases["vocode"] = drive(server, 16, args.warmup, args.seconds, vocode, clip)
        print(f"tts: 16 clients, {args.seconds:g} s", flush=True)
        phases["tts"] = drive(server, 16, args.warmup, args.seconds, "/v1/tts", tts)
        print("stream: first chunks on an idle server", flush=True)
        phases["stream"] = first_chunks(server, voice, 5)
        print(f"overload: 64 clients, {args.overload_seconds:g} s", flush=True)
        phases["overload"] = drive(server, 64, 0.0, args.overload_seconds, vocode, clip)
        alive = server.call("GET", "/health").status == 200
        page = screenshot(server, args.out.with_name("serve_page.png"))
        rss_end = rss_mib(server)

    loaded = [phases["vocode"], phases["tts"]]
    result = {
        "benchmark": "serve_load",
        "server": {
            "artifacts": [m["name"] for m in catalog["models"]],
            "voice": voice,
            **settings,
        },
        "phases": phases,
        "page": page,
        "rss_ready_mib": round(rss_ready, 1),
        "rss_end_mib": round(rss_end, 1),
        "rss_ready_to_end": round(rss_end / rss_ready, 4),  # warm-ups included
        "checks": {
            "no_errors_at_16_clients": all(p["errors"] == 0 for p in loaded),
            "rss_growth_within_10pct": max(p["rss_growth"] for p in loaded) <= 1.10,
            "overload_gives_503": phases["overload"]["statuses"].get("503", 0) > 0,
            "overload_no_timeouts_or_drops": set(phases["overload"]["statuses"]) <= {"200", "503"},
            "alive_after_overload": alive,
        },
        "machine": bench_machine(),
    }
    write_result(args.out, result, headline=["checks", "rss_ready_to_end"])


if __name__ == "__main__":
    main()
