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
a timeout or a crash. Then two phases of clients that misbehave, each with its own `ok`:

- disconnects: the tts load, where a seeded tenth of the requests go on a raw socket that is
  closed 0.05-0.5 s after sending, before the reply; then a burst of workers + 2 such requests,
  closed once the workers run them. No 500 (seen by a client or counted by the server), the
  workers idle (GET /health: running == waiting == 0) within 2 s of the load's end and of the
  burst's close, and the server's speedy_client_disconnects_total delta at most the requests
  given up on.
  Accounting: a request whose reply started before the close is "answered", not given up on;
  one the server finished in the instant before the close (it then counts a status, not a
  disconnect) is "completed anyway": the server's requests_total delta minus the answers the
  clients saw; one closed before the server parsed it is counted by neither. So disconnects +
  completed anyway + not reached == given up on, and only the last term is inferred.
- slow clients: 10 stalled connections (half a request head, or a head and part of its body;
  re-opened as the server closes them, after --read-timeout) held open under the tts load, against
  the same load without them measured just before. ok: p95 latency with stalls within 1.25x of
  without, no errors in either, and each stall closed within --read-timeout + 2 s.

Last, the page at / plays a sentence through A (--vocoder) and B (--page-b) in headless
Chromium, and its screenshot is kept beside the result. --phases picks phases (all by default).

    make run && speedy run sambert_zh_en      # build/hifigan_v1/* and build/sambert_zh_en/*
    python benchmarks/serve_load.py [--seconds 60] [--vocoder build/hifigan_v1/quantize]
    python benchmarks/serve_load.py --phases disconnects,slow --seconds 5 --out /tmp/load.json
"""

import argparse
import json
import os
import random
import select
import socket
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from serve_startup import Server, serving

from speedy.bench.machine import bench_machine
from speedy.machine import write_result
from speedy.recipe import DEFAULT_DATA

ROOT = Path(__file__).resolve().parent
JSON = {"Content-Type": "application/json"}
TEXT = "The fast model should still sound the same. 快速的模型听起来应该一样。"
CLIP = DEFAULT_DATA / "LJ001-0008.wav"  # 1.8 s
PAGE_TEXT = "The fast model should still sound the same, and now we can hear it side by side."
CLIENT_TIMEOUT_S = 60.0
RSS_EVERY_S = 5.0
PHASES = ("vocode", "tts", "stream", "overload", "disconnects", "slow", "page")
FREE_WITHIN_S = 2.0  # after a load with disconnects, for the workers to be idle
SETTLE_S = 0.5  # for the last disconnect to be counted once its worker is free
BURST_WAIT_S = 30.0  # the longest a burst waits for its requests to reach the workers
BURST_HOLD_S = 0.3  # then how long it lets them compute before closing
STALL_KINDS = ("half_head", "partial_json_body", "half_head", "partial_upload_body")
STALL_GRACE_S = 2.0  # past --read-timeout, for the server to close a stalled connection
P95_RATIO_MAX = 1.25  # p95 with stalled connections over p95 without
CHROMIUM = "/usr/bin/chromium"  # Debian's, headless, as root, no GPU, muted
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--mute-audio", "--no-first-run",
                  "--disable-background-networking",
                  "--autoplay-policy=no-user-gesture-required"]  # fmt: skip


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass(frozen=True)
class Abandon:
    """A share of a load's requests sent on a raw socket, closed after a random pause."""

    share: float
    seed: int
    pause_s: tuple[float, float] = (0.05, 0.5)


@dataclass
class Load:
    """What a load's clients saw."""

    records: list[dict]  # the keep-alive clients' requests sent after the warm-up
    answered: int  # the keep-alive clients' requests that got a status, warm-up included
    raw: list[dict]  # the raw-socket requests (Abandon), warm-up included
    timeline: list[tuple[float, float]]  # (seconds into the phase, server RSS)
    ended: float  # perf_counter() when the last client stopped


def load(
    server: Server,
    clients: int,
    warmup: float,
    seconds: float,
    path: str,
    body,
    abandon: Abandon | None = None,
) -> Load:
    """`clients` threads sending `body` to `path` back to back for `warmup` + `seconds` (with
    `abandon`, some of them on a raw socket they close before the reply)."""
    records: list[dict] = []
    raw: list[dict] = []
    answered, ends = [0], []
    lock = threading.Lock()
    began = time.perf_counter()
    measured, deadline = began + warmup, began + warmup + seconds
    wire = raw_request(server, path, body) if abandon else b""

    def client(index: int) -> None:
        own = requests.Session()  # one keep-alive connection, opened again when dropped
        payload = {"json": body} if isinstance(body, dict) else {"data": body}
        rng = random.Random(f"{abandon.seed}:{index}") if abandon else None
        while (start := time.perf_counter()) < deadline:
            if abandon and rng and rng.random() < abandon.share:
                outcome = give_up(server, wire, rng.uniform(*abandon.pause_s))
                with lock:
                    raw.append(outcome | {"measured": start >= measured})
                continue
            try:
                reply = own.post(server.url + path, timeout=CLIENT_TIMEOUT_S, **payload)
                headers = {name.lower(): value for name, value in reply.headers.items()}
                record = {"status": reply.status_code, "headers": headers}
            except requests.Timeout:
                record = {"status": "timeout"}
            except requests.ConnectionError:  # reset or refused: the server dropped it
                record = {"status": "connection_error"}
            record["seconds"] = time.perf_counter() - start
            if record["status"] == 503:
                time.sleep(min(1.0, float(record["headers"].get("retry-after", 1))))
            with lock:
                answered[0] += isinstance(record["status"], int)
                if start >= measured:
                    records.append(record)
        own.close()
        with lock:
            ends.append(time.perf_counter())

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    timeline: list[tuple[float, float]] = []
    while any(thread.is_alive() for thread in threads):
        if not timeline or time.perf_counter() - began >= timeline[-1][0] + RSS_EVERY_S:
            timeline.append((time.perf_counter() - began, server.rss_mib()))
        time.sleep(0.02)
    for thread in threads:
        thread.join()
    return Load(records, answered[0], raw, timeline, max(ends, default=time.perf_counter()))


def drive(server: Server, clients: int, warmup: float, seconds: float, path: str, body) -> dict:
    """`clients` threads sending `body` to `path` back to back for `warmup` + `seconds`; the
    outcomes of the requests sent after the warm-up, and the server's RSS every few seconds."""
    run = load(server, clients, warmup, seconds, path, body)
    return summarized(run, server, clients, warmup, seconds)


def summarized(run: Load, server: Server, clients: int, warmup: float, seconds: float) -> dict:
    """`summarize` of a load's measured requests, with its RSS timeline."""
    timeline = run.timeline
    rss_start = next((rss for t, rss in timeline if t >= warmup), timeline[-1][1])
    return summarize(run.records, clients, seconds, rss_start, server.rss_mib()) | {
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


def first_chunks(server: Server, voice: str, count: int) -> dict:
    """Streamed tts on an idle server: seconds to the first audio bytes, and to the last."""
    first, whole = [], []
    request = {"voice": voice, "text": TEXT}
    for _ in range(count):
        start = time.perf_counter()
        url = server.url + "/v1/tts?stream=1"
        with requests.post(url, json=request, stream=True, timeout=CLIENT_TIMEOUT_S) as reply:
            pieces = reply.iter_content(chunk_size=None)  # as they arrive
            received = 0
            while received <= 44:  # the WAV header comes first, at once
                received += len(next(pieces))
            first.append(time.perf_counter() - start)
            for _ in pieces:
                pass
        whole.append(time.perf_counter() - start)
    return {
        "requests": count,
        "first_chunk_median_s": statistics.median(first),
        "whole_median_s": statistics.median(whole),
    }


def raw_request(server: Server, path: str, body: dict) -> bytes:
    """A whole JSON POST of `body` to `path`, as bytes for a socket."""
    data = json.dumps(body).encode()
    return head(server, path, JSON, len(data)) + data


def head(server: Server, path: str, headers: dict[str, str], length: int) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {server.host}:{server.port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += [f"Content-Length: {length}", "", ""]
    return "\r\n".join(lines).encode()


def status_of(data: bytes) -> int | None:
    """The status in a response's first bytes, if they hold one."""
    parts = data.split(b" ", 2)
    return int(parts[1]) if data.startswith(b"HTTP/") and len(parts) > 2 else None


def give_up(server: Server, wire: bytes, pause: float) -> dict:
    """Send `wire` on a new connection and close it after `pause` s: "abandoned", or "answered"
    if the reply began first."""
    try:
        sock = socket.create_connection((server.host, server.port), timeout=CLIENT_TIMEOUT_S)
    except OSError as exc:
        return {"outcome": "not_connected", "error": type(exc).__name__}
    with sock:
        try:
            sock.sendall(wire)
        except OSError as exc:
            return {"outcome": "not_sent", "error": type(exc).__name__}
        readable, _, _ = select.select([sock], [], [], pause)
        if not readable:
            return {"outcome": "abandoned", "pause_s": pause}
        data = b""
        try:
            while b"\r\n" not in data and (more := sock.recv(256)):
                data += more
        except OSError:
            pass
        return {"outcome": "answered", "status": status_of(data)}


def scrape(server: Server) -> dict[str, float]:
    """GET /metrics as {series: value}."""
    text = server.get("/metrics").text
    lines = (line.rsplit(" ", 1) for line in text.splitlines() if line and line[0] != "#")
    return {name: float(value) for name, value in lines}


def requests_by_status(metrics: dict[str, float], endpoint: str) -> dict[str, float]:
    prefix = f'speedy_requests_total{{endpoint="{endpoint}",status="'
    return {k[len(prefix) : -2]: v for k, v in metrics.items() if k.startswith(prefix)}


def until_idle(server: Server, since: float) -> float | None:
    """Seconds from `since` until GET /health shows no request running or waiting (None: not
    within 30 s)."""
    while time.perf_counter() - since < 30.0:
        health = server.get("/health").json()
        if health["running"] == health["waiting"] == 0:
            return round(time.perf_counter() - since, 3)
        time.sleep(0.02)
    return None


def burst(server: Server, wire: bytes, count: int, workers: int) -> dict:
    """`count` requests at once on raw sockets, all closed BURST_HOLD_S after `workers` of them
    run (or after BURST_WAIT_S), mid-compute; seconds from the close until the workers are idle."""
    socks = [socket.create_connection((server.host, server.port)) for _ in range(count)]
    for sock in socks:
        sock.sendall(wire)
    began = time.perf_counter()
    while True:
        health = server.get("/health").json()
        if health["running"] >= workers or time.perf_counter() - began > BURST_WAIT_S:
            break
        time.sleep(0.01)
    time.sleep(BURST_HOLD_S)
    answered = select.select(socks, [], [], 0)[0]
    statuses = []
    for sock in answered:
        try:
            statuses.append(status_of(sock.recv(256)))
        except OSError:
            statuses.append(None)
    for sock in socks:
        sock.close()
    closed = time.perf_counter()
    outcomes = [{"outcome": "answered", "status": status} for status in statuses]
    outcomes += [{"outcome": "abandoned"} for _ in range(count - len(answered))]
    return {
        "requests": count,
        "running_at_close": health["running"],
        "waiting_at_close": health["waiting"],
        "answered_before_close": len(answered),
        "workers_free_after_s": until_idle(server, closed),
        "outcomes": outcomes,
    }


def disconnects(
    server: Server,
    clients: int,
    warmup: float,
    seconds: float,
    path: str,
    body: dict,
    abandon: Abandon,
    workers: int,
) -> dict:
    """The load of `drive`, with `abandon`'s share of requests given up on mid-request; then a
    burst of `workers` + 2 requests given up on while `workers` of them run; how the server
    counted them, and how soon its workers were free after the load and after the burst."""
    endpoint = path.rsplit("/", 1)[-1]
    gone = f'speedy_client_disconnects_total{{endpoint="{endpoint}"}}'
    before = scrape(server)
    run = load(server, clients, warmup, seconds, path, body, abandon)
    free_s = until_idle(server, run.ended)
    result = summarized(run, server, clients, warmup, seconds)
    last = burst(server, raw_request(server, path, body), workers + 2, workers)
    time.sleep(SETTLE_S)  # a disconnect is counted just after its worker is free
    after = scrape(server)

    counted = round(after.get(gone, 0) - before.get(gone, 0))
    statuses = requests_by_status(after, endpoint)
    old = requests_by_status(before, endpoint)
    server_statuses = {
        k: round(v - old.get(k, 0)) for k, v in statuses.items() if v > old.get(k, 0)
    }
    outcomes: dict[str, int] = {}
    for r in run.raw:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    every = run.raw + last.pop("outcomes")
    answered_raw = [r["status"] for r in every if r["outcome"] == "answered"]
    given_up = sum(r["outcome"] == "abandoned" for r in every)
    freed = [free_s, last["workers_free_after_s"]]
    seen = run.answered + sum(isinstance(s, int) for s in answered_raw)
    completed_anyway = sum(server_statuses.values()) - seen
    criteria = {
        "no_500": "500" not in result["statuses"]
        and 500 not in answered_raw
        and "500" not in server_statuses,
        "no_timeouts_or_drops": set(result["statuses"]) <= {"200", "503"}
        and set(outcomes) <= {"abandoned", "answered"},
        "workers_free_within_2s": all(f is not None and f <= FREE_WITHIN_S for f in freed),
        "disconnects_at_most_given_up": 0 <= counted <= given_up,
    }
    return result | {
        "endpoint": endpoint,
        "abandon": {"share": abandon.share, "seed": abandon.seed, "pause_s": abandon.pause_s},
        "raw_requests": len(run.raw),  # in the load, warm-up included
        "raw_outcomes": outcomes,
        "workers_free_after_s": free_s,  # after the load's last client stopped
        "burst": last,
        # The load's raw requests and the burst's, together:
        "answered_before_close": {
            str(s): answered_raw.count(s) for s in sorted(set(answered_raw), key=str)
        },
        "given_up": given_up,
        "disconnects_counted": counted,
        "server_statuses": server_statuses,
        "completed_anyway": completed_anyway,
        "not_reached": given_up - counted - completed_anyway,
        "criteria": criteria,
        "ok": all(criteria.values()),
    }


@dataclass
class Stalls:
    """`count` connections that send part of a request and then nothing, each re-opened as the
    server closes it, until the block ends; how long the server took to close each."""

    server: Server
    count: int
    wires: dict[str, bytes]  # kind -> the bytes a stalled connection of that kind sends
    closes: list[dict] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> "Stalls":
        for i in range(self.count):
            kind = STALL_KINDS[i % len(STALL_KINDS)]
            self._threads.append(threading.Thread(target=self._hold, args=(kind,)))
            self._threads[-1].start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _hold(self, kind: str) -> None:
        while not self._stop.is_set():
            try:
                sock = socket.create_connection((self.server.host, self.server.port), timeout=5)
            except OSError as exc:
                self.closes.append({"kind": kind, "error": type(exc).__name__})
                time.sleep(0.1)
                continue
            with sock:
                opened = time.perf_counter()
                data, closed = b"", False
                try:
                    sock.sendall(self.wires[kind])
                except OSError:
                    closed = True
                while not closed and not self._stop.is_set():
                    if not select.select([sock], [], [], 0.05)[0]:
                        continue
                    try:
                        more = sock.recv(4096)
                    except OSError:
                        more = b""
                    if not more:
                        closed = True
                        break
                    data += more
                held = time.perf_counter() - opened
            self.closes.append(
                {
                    "kind": kind,
                    "closed_by_server": closed,
                    "seconds": held,
                    "status": status_of(data),
                }
            )

    def report(self, read_timeout: float) -> dict:
        """Per kind: connections the server closed, after how long, with what status."""
        kinds: dict[str, dict] = {}
        for kind in dict.fromkeys(STALL_KINDS):
            mine = [c for c in self.closes if c["kind"] == kind and "error" not in c]
            shut = [c["seconds"] for c in mine if c["closed_by_server"]]
            still = [c["seconds"] for c in mine if not c["closed_by_server"]]
            statuses = [str(c["status"] or "no_reply") for c in mine if c["closed_by_server"]]
            kinds[kind] = {
                "closed_by_server": len(shut),
                "closed_after_s": {
                    "min": round(min(shut), 3),
                    "median": round(statistics.median(shut), 3),
                    "max": round(max(shut), 3),
                }
                if shut
                else None,
                "statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
                "open_at_end": len(still),
                "open_at_end_longest_s": round(max(still), 3) if still else None,
            }
        limit = read_timeout + STALL_GRACE_S
        late = [c for c in self.closes if "error" not in c and c["seconds"] > limit]
        return {
            "stalled": self.count,
            "read_timeout_s": read_timeout,
            "opened": len(self.closes),
            "closed_by_server": sum(c.get("closed_by_server", False) for c in self.closes),
            "connect_errors": sum("error" in c for c in self.closes),
            "kinds": kinds,
            "held_past_read_timeout_plus_2s": len(late),
        }


def slow_clients(
    server: Server,
    clients: int,
    warmup: float,
    seconds: float,
    path: str,
    body: dict,
    stalls: int,
    wires: dict[str, bytes],
    read_timeout: float,
) -> dict:
    """The load of `drive` without, then with, `stalls` stalled connections held open."""
    load_before = os.getloadavg()[0]
    without = drive(server, clients, warmup, seconds, path, body)
    load_between = os.getloadavg()[0]
    with Stalls(server, stalls, wires) as stalled:
        with_stalls = drive(server, clients, warmup, seconds, path, body)
    report = stalled.report(read_timeout)

    def ratio(key: str) -> float | None:
        a, b = with_stalls[key], without[key]
        return round(a / b, 3) if a is not None and b else None

    ratios = {key: ratio(key) for key in ("latency_p50_s", "latency_p95_s", "requests_per_s")}
    p95 = ratios["latency_p95_s"]
    criteria = {
        "p95_within_1.25x": p95 is not None and p95 <= P95_RATIO_MAX,
        "no_errors": without["errors"] == 0 and with_stalls["errors"] == 0,
        "stalls_closed_by_read_timeout": report["closed_by_server"] > 0
        and report["held_past_read_timeout_plus_2s"] == 0
        and report["connect_errors"] == 0,
    }
    return {
        "endpoint": path,
        "without_stalls": without,
        "with_stalls": with_stalls,
        "ratio_with_to_without": ratios,
        "stalls": report,
        "load_average_1m": {"before": round(load_before, 2), "between": round(load_between, 2)},
        "criteria": criteria,
        "ok": all(criteria.values()),
    }


def stall_wires(server: Server, tts: dict, vocode: str, clip: bytes) -> dict[str, bytes]:
    """What each kind of stalled connection sends before it stops."""
    text = json.dumps(tts).encode()
    full_head = head(server, "/v1/tts", JSON, len(text)).decode()
    return {
        "half_head": full_head[: len(full_head) // 2].encode(),
        "partial_json_body": head(server, "/v1/tts", JSON, len(text)) + text[: len(text) // 2],
        "partial_upload_body": head(server, vocode, {}, len(clip)) + clip[:4096],
    }


def screenshot(server: Server, path: Path) -> dict:
    """The page at / in headless Chromium ([dev] extra) after playing one sentence through A and
    B: the timings it shows, and a PNG."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            page.goto(server.url + "/")
            page.wait_for_selector("#voice-b option", state="attached")
            page.fill("#text", PAGE_TEXT)
            timings = {}
            for side in "ab":
                page.click(f"#play-{side}")
                state = f"document.getElementById('timing-{side}').dataset.state"
                page.wait_for_function(f"['done', 'error'].includes({state})")
                timings[side] = page.inner_text(f"#timing-{side}")
                if page.evaluate(state) == "error":
                    raise RuntimeError(f"the page shows an error for {side}: {timings[side]}")
            page.screenshot(path=str(path), full_page=True)
        finally:
            browser.close()
    return {"timings": timings, "screenshot": path.name}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=10.0, help="load before measuring")
    parser.add_argument("--overload-seconds", type=float, default=20.0)
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated phases to run, in this order: {','.join(PHASES)} (default: all)",
    )
    parser.add_argument(
        "--abandon", type=float, default=0.1, help="share of disconnects' requests given up on"
    )
    parser.add_argument("--seed", type=int, default=0, help="of the requests given up on")
    parser.add_argument("--stalls", type=int, default=10, help="stalled connections (slow)")
    parser.add_argument(
        "--read-timeout", type=float, default=5.0, help="the server's --read-timeout (s)"
    )
    parser.add_argument("--acoustic", type=Path, default=Path("build/sambert_zh_en/simplify"))
    parser.add_argument("--vocoder", type=Path, default=Path("build/hifigan_v1/quantize"))
    parser.add_argument(
        "--page-b", type=Path, default=Path("build/hifigan_v1/simplify"), help="B on the page"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "serve_load_cpu.json")
    args = parser.parse_args()
    chosen = {name.strip() for name in args.phases.split(",") if name.strip()}
    if unknown := chosen - set(PHASES):
        parser.error(f"unknown phase(s) {', '.join(sorted(unknown))}; pick from {PHASES}")

    settings = {"workers": 2, "queue": 32, "threads": 1, "read-timeout": args.read_timeout}
    flags = [item for key, value in settings.items() for item in (f"--{key}", str(value))]
    served = [str(args.acoustic), str(args.vocoder), str(args.page_b)]
    result: dict = {}
    with serving([*served, *flags]) as server:
        catalog = server.get("/v1/models").json()
        voice = catalog["voices"][0]["name"]  # --acoustic + --vocoder
        vocode = f"/v1/vocode?model={next(iter(catalog['uploads']))}"  # --vocoder
        rss_ready = server.rss_mib()
        clip = CLIP.read_bytes()
        tts = {"voice": voice, "text": TEXT}
        phases = {}
        if "vocode" in chosen:
            print(f"vocode: 16 clients, {args.seconds:g} s", flush=True)
            phases["vocode"] = drive(server, 16, args.warmup, args.seconds, vocode, clip)
        if "tts" in chosen:
            print(f"tts: 16 clients, {args.seconds:g} s", flush=True)
            phases["tts"] = drive(server, 16, args.warmup, args.seconds, "/v1/tts", tts)
        if "stream" in chosen:
            print("stream: first chunks on an idle server", flush=True)
            phases["stream"] = first_chunks(server, voice, 5)
        if "overload" in chosen:
            print(f"overload: 64 clients, {args.overload_seconds:g} s", flush=True)
            phases["overload"] = drive(server, 64, 0.0, args.overload_seconds, vocode, clip)
            alive = server.get("/health").status_code == 200
        if "disconnects" in chosen:
            print(f"disconnects: 16 clients, {args.abandon:.0%} given up, {args.seconds:g} s")
            abandon = Abandon(args.abandon, args.seed)
            result["disconnects"] = disconnects(
                server, 16, args.warmup, args.seconds, "/v1/tts", tts, abandon, settings["workers"]
            )
        if "slow" in chosen:
            print(
                f"slow: 16 clients, {args.seconds:g} s without, then with {args.stalls} stalled "
                "connections",
                flush=True,
            )
            result["slow_clients"] = slow_clients(
                server,
                16,
                args.warmup,
                args.seconds,
                "/v1/tts",
                tts,
                args.stalls,
                stall_wires(server, tts, vocode, clip),
                args.read_timeout,
            )
        if "page" in chosen:
            page = screenshot(server, args.out.with_name("serve_page.png"))
        rss_end = server.rss_mib()

    loaded = [phases[name] for name in ("vocode", "tts") if name in phases]
    checks = {}
    if loaded:
        checks["no_errors_at_16_clients"] = all(p["errors"] == 0 for p in loaded)
        checks["rss_growth_within_10pct"] = max(p["rss_growth"] for p in loaded) <= 1.10
    if "overload" in phases:
        statuses = phases["overload"]["statuses"]
        checks["overload_gives_503"] = statuses.get("503", 0) > 0
        checks["overload_no_timeouts_or_drops"] = set(statuses) <= {"200", "503"}
        checks["alive_after_overload"] = alive
    result = {
        "benchmark": "serve_load",
        "server": {
            "artifacts": [m["name"] for m in catalog["models"]],
            "voice": voice,
            **settings,
        },
        "phases_run": [name for name in PHASES if name in chosen],
        "phases": phases,
        **({"page": page} if "page" in chosen else {}),
        "rss_ready_mib": round(rss_ready, 1),
        "rss_end_mib": round(rss_end, 1),
        "rss_ready_to_end": round(rss_end / rss_ready, 4),  # warm-ups included
        "checks": checks,
        **result,  # disconnects, slow_clients
        "machine": bench_machine(),
    }
    for key in ("disconnects", "slow_clients"):
        if key in result:
            print(f"{key}: ok {result[key]['ok']} {json.dumps(result[key]['criteria'])}")
    write_result(args.out, result, headline=["checks", "rss_ready_to_end"])


if __name__ == "__main__":
    main()
