"""`speedy serve` behind a load balancer, over real HTTP on loopback: hostile uploads and controls
are refused before any work (no 500, no stall of other clients, no memory growth), a client that
leaves frees its worker, stalled connections are closed, SIGTERM drains truthfully, and the
OpenAI speech API, API keys, CORS and the Host check behave as documented."""

import io
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import soundfile as sf

from tests.serve_client import Reply, ServerProcess, idle, spawn

pytest.importorskip("pypinyin", reason="Chinese text needs the [text] extra (pypinyin)")
pytest.importorskip("uvicorn", reason="serving needs the [serve] extra (starlette, uvicorn)")
TEXT = "安静的夜晚，月光洒在湖面上。The quiet lake held the moon."
LONG_ENGLISH = "Every quiet harbour keeps a lantern burning for the late boats. " * 7  # 448 chars
MEMORY_GROWTH = 1.5  # the most a hostile request may grow the server's memory, over steady state


@pytest.fixture(scope="module")
def server(sambert_build, tiny_build, piper_import) -> Iterator[ServerProcess]:
    """The tiny Sambert with a tiny HiFi-GAN, and Piper's joe voice; two workers, short read
    timeouts, few connections."""
    with spawn([
        f"sambert={sambert_build['simplify'].path}", f"hifigan={tiny_build['simplify'].path}",
        f"joe={piper_import.path}", "--chunk-seconds", "0.1", "--read-timeout", "1",
        "--max-connections", "24",
    ]) as served:  # fmt: skip
        yield served


@pytest.fixture(scope="module")
def steady_mib(server: ServerProcess) -> float:
    """The server's memory once each kind of request has run twice."""
    sambert = {"voice": "sambert+hifigan", "text": TEXT}
    for _ in range(2):
        assert server.call("POST", "/v1/tts", sambert).status == 200
        assert server.call("POST", "/v1/tts", {"voice": "joe", "text": LONG_ENGLISH}).status == 200
        assert server.call("POST", "/v1/vocode", wav_bytes(3.0, 22050)).status == 200
    return server.rss_mib()


def wav_bytes(seconds: float, rate: int, format: str = "WAV", level: float = 0.01) -> bytes:
    """`seconds` of a quiet tone (`level` 0: silence), written block by block."""
    buffer = io.BytesIO()
    block = (level * np.sin(np.arange(rate) * 0.05)).astype(np.float32)
    with sf.SoundFile(buffer, "w", rate, 1, format=format, subtype="PCM_16") as file:
        for _ in range(int(seconds)):
            file.write(block)
    return buffer.getvalue()


@contextmanager
def health_watched(server: ServerProcess) -> Iterator[list[float]]:
    """/health's latency every 0.1 s while inside; a failed or late call counts as 60 s."""
    latencies: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                ok = server.call("GET", "/health").status == 200
            except OSError:
                ok = False
            latencies.append(time.perf_counter() - start if ok else 60.0)
            stop.wait(0.1)

    thread = threading.Thread(target=watch)
    thread.start()
    try:
        yield latencies
    finally:
        stop.set()
        thread.join()


def assert_refused(reply: Reply, statuses: tuple[int, ...], phrase: str) -> None:
    assert reply.status in statuses, (reply.status, reply.body[:300])
    error = reply.json()
    assert phrase in error["error"] and error["fix"], error


def test_long_uploads_are_refused_from_their_header(server, steady_mib) -> None:
    """30 minutes of audio in a 48 kHz FLAC of a few hundred KB, and a 15 MB WAV: refused
    before decoding, while /health answers within 1 s and memory stays put."""
    flac = wav_bytes(30 * 60, 48000, "FLAC", level=0.0)
    big_wav = wav_bytes(340, 22050)
    assert len(flac) < 1_000_000 and len(big_wav) > 14_000_000
    with health_watched(server) as latencies:
        for body, seconds in ((flac, "1800.0 s"), (big_wav, "340.0 s")):
            start = time.perf_counter()
            reply = server.call("POST", "/v1/vocode", body)
            assert_refused(reply, (413,), f"the upload holds {seconds} of audio")
            assert "shorter" in reply.json()["fix"]
            assert time.perf_counter() - start < 5.0
        time.sleep(0.3)
    assert max(latencies) < 1.0, latencies
    assert server.rss_mib() < MEMORY_GROWTH * steady_mib


@pytest.mark.parametrize(
    ("body", "status", "phrase"),
    [
        (
            {"voice": "joe", "text": LONG_ENGLISH, "speed": 0.005},
            422,
            "speed: Input should be greater",
        ),
        ({"voice": "joe", "text": "hello", "speed": 1e-9}, 422, "speed: Input should be greater"),
        ({"voice": "joe", "text": "hello", "noise_w": 1e9}, 422, "noise_w: Input should be less"),
        ({"text": TEXT, "speed": 1e308}, 422, "speed: Input should be less"),
        ({"text": TEXT, "speed": 1e-30}, 422, "speed: Input should be greater"),
        ({"text": TEXT, "pitch_shift": "NaN"}, 422, "pitch_shift: Input should be a finite number"),
        ('{"text": "hi", "pitch_shift": NaN}', 400, "NaN is not a number"),
        ('{"text": "hi", "pitch_shift": -Infinity}', 400, "-Infinity is not a number"),
        ('{"text": "hi", "speaker": 1' + "0" * 100_000 + "}", 400, "integer of 100001 digits"),
        ("[" * 100_000 + "]" * 100_000, 400, "malformed JSON"),
        ('{"text": "hi", "x": ' + "[" * 50 + "]" * 50 + "}", 400, "nests deeper than 8"),
        ({"text": TEXT, "voice": ["a"]}, 422, "voice: must be a name"),
        ({"text": TEXT, "voice": {"name": "joe"}}, 422, "voice: must be a name"),
        ({"text": "1" * 500}, 413, "too large for this model"),
    ],
)
def test_controls_past_their_reach_are_refused_at_once(
    server, steady_mib, body, status, phrase
) -> None:
    with health_watched(server) as latencies:
        for path in ("/v1/tts", "/v1/tts?stream=1"):
            start = time.perf_counter()
            assert_refused(server.call("POST", path, body), (status,), phrase)
            assert time.perf_counter() - start < 3.0
    assert max(latencies) < 1.0, latencies
    assert server.rss_mib() < MEMORY_GROWTH * steady_mib


def test_json_must_say_it_is_json(server) -> None:
    """A cross-site form can send text/plain without asking: a JSON route takes only JSON."""
    reply = server.call(
        "POST", "/v1/tts", json.dumps({"text": TEXT}), {"Content-Type": "text/plain"}
    )
    assert_refused(reply, (415,), "'text/plain', not JSON")


def seconds_to_idle(server: ServerProcess, within: float) -> float:
    """Seconds until no request runs or waits (fails after `within`)."""
    free = server.health_when(idle, time.perf_counter(), within)
    assert free is not None, f"workers still busy after {within} s"
    return free


def leave_after(server: ServerProcess, path: str, body: dict, seconds: float) -> None:
    """Send a request, then close the connection after `seconds` (reading at most its head)."""
    with socket.create_connection((server.host, server.port)) as sock:
        data = json.dumps(body).encode()
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        sock.sendall(f"{head}Content-Length: {len(data)}\r\n\r\n".encode() + data)
        time.sleep(seconds)


def metric(server: ServerProcess, line: str) -> float:
    for row in server.call("GET", "/metrics").body.decode().splitlines():
        if row.startswith(line + " "):
            return float(row.split()[-1])
    return 0.0


def test_a_client_that_leaves_frees_its_worker(server) -> None:
    """Two slow requests (two minutes of audio each at speed 0.25) and a stream whose clients
    leave after 0.3 s: the workers are free within 2 s, and nothing counts as an error."""
    slow = {"voice": "joe", "text": LONG_ENGLISH, "speed": 0.25, "noise_scale": 0.0}
    before = metric(server, 'speedy_client_disconnects_total{endpoint="tts"}')
    leavers = [
        threading.Thread(target=leave_after, args=(server, "/v1/tts", slow, 0.3)) for _ in range(2)
    ]
    for thread in leavers:
        thread.start()
    for thread in leavers:
        thread.join()
    assert seconds_to_idle(server, 2.0) < 2.0
    assert metric(server, 'speedy_client_disconnects_total{endpoint="tts"}') == before + 2
    streamed = {"text": TEXT * 3, "speed": 0.5}  # 19 s of audio, 0.65 s of work here
    leave_after(server, "/v1/tts?stream=1", streamed, 0.2)
    assert seconds_to_idle(server, 2.0) < 2.0
    assert metric(server, 'speedy_client_disconnects_total{endpoint="tts_stream"}') >= 1
    assert 'status="500"' not in server.call("GET", "/metrics").body.decode()
    assert "Traceback" not in "".join(server.log)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes `sock` within `seconds` (reading whatever it sends first)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    return True


def test_stalled_connections_are_closed_and_stall_nobody(server) -> None:
    """With --read-timeout 1: a silent connection, half a head, and a body that stops arriving
    are closed (the last with 408) while /health keeps answering; past --max-connections new
    connections get 503."""
    address = (server.host, server.port)
    with health_watched(server) as latencies:
        silent = socket.create_connection(address)
        half = socket.create_connection(address)
        half.sendall(b"POST /v1/tts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-")
        body = socket.create_connection(address)
        body.sendall(JSON_HEAD + b"Content-Length: 1000\r\n\r\n" + b'{"text": "')
        reply = b""
        body.settimeout(4)
        while chunk := body.recv(4096):
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 408") and b"did not arrive in time" in reply
        assert closed_within(silent, 4) and closed_within(half, 4)
    assert max(latencies) < 1.0, latencies
    idle = [socket.create_connection(address) for _ in range(24)]
    try:
        assert server.call("GET", "/health").status == 503
    finally:
        for sock in idle:
            sock.close()
    for _ in range(50):  # the server sees the closes
        if server.call("GET", "/health").status == 200:
            break
        time.sleep(0.05)


JSON_HEAD = b"POST /v1/tts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


def test_openai_client_gets_what_tts_gives(server) -> None:
    """The `openai` package's own client, whole and streamed, against /v1/audio/speech."""
    openai = pytest.importorskip("openai", reason="the [dev] extra")
    client = openai.OpenAI(base_url=f"http://{server.host}:{server.port}/v1", api_key="unused")
    asked = {"model": "sambert+hifigan", "voice": "2", "input": TEXT, "speed": 0.9}
    native = {"voice": "sambert+hifigan", "text": TEXT, "speaker": 2, "speed": 0.9}
    whole = client.audio.speech.create(**asked, response_format="wav")
    reference = server.call("POST", "/v1/tts", native)
    assert whole.content == reference.body
    expected, rate = sf.read(io.BytesIO(reference.body), dtype="int16")
    with client.audio.speech.with_streaming_response.create(
        **asked, response_format="pcm", stream_format="audio"
    ) as response:
        assert response.headers["x-sample-rate"] == str(rate)
        pcm = b"".join(response.iter_bytes())
    streamed = np.frombuffer(pcm, "<i2")
    assert streamed.size == expected.size and np.abs(streamed - expected).max() <= 1
    for format, media in (("flac", "audio/flac"), ("mp3", "audio/mpeg"), ("opus", "audio/ogg")):
        reply = client.audio.speech.with_raw_response.create(**asked, response_format=format)
        assert reply.headers["content-type"] == media
        audio, file_rate = sf.read(io.BytesIO(reply.content))
        assert audio.size / file_rate == pytest.approx(expected.size / rate, abs=0.08)
    with pytest.raises(openai.UnprocessableEntityError, match="response_format"):
        client.audio.speech.create(**asked, response_format="aac")
    with pytest.raises(openai.NotFoundError, match="unknown voice 'alloy'"):
        client.audio.speech.create(**(asked | {"voice": "alloy"}))
    listed = {m["model"]: m for m in server.call("GET", "/v1/audio/voices").json()["models"]}
    assert listed["joe"]["voices"] == ["default", "0"] and not listed["joe"]["streams"]
    assert listed["sambert+hifigan"]["voices"][:3] == ["default", "0", "1"]


def test_sse_stream_carries_the_same_audio(server) -> None:
    body = {"model": "sambert+hifigan", "voice": "1", "input": TEXT, "response_format": "pcm"}
    whole = server.call("POST", "/v1/audio/speech", body).body
    events = server.call("POST", "/v1/audio/speech", body | {"stream_format": "sse"})
    assert events.headers["content-type"].startswith("text/event-stream")
    import base64

    decoded = [json.loads(line[6:]) for line in events.body.decode().split("\n\n") if line]
    assert decoded[-1]["type"] == "speech.audio.done"
    pcm = b"".join(base64.b64decode(e["audio"]) for e in decoded[:-1])
    a, b = np.frombuffer(pcm, "<i2"), np.frombuffer(whole, "<i2")
    assert a.size == b.size and np.abs(a.astype(int) - b).max() <= 1


@pytest.fixture(scope="module")
def guarded(tiny_build) -> Iterator[ServerProcess]:
    with spawn([
        f"hifigan={tiny_build['simplify'].path}", "--api-key", "s3cret-key",
        "--cors-origin", "https://studio.example",
    ], env={"SPEEDY_CACHE_DIR": "/proc/speedy-cache"}) as served:  # fmt: skip
        yield served


def test_api_key_cors_and_host(guarded) -> None:
    """(The server started with a cache directory no one can write: it needs none.)"""
    key = {"Authorization": "Bearer s3cret-key"}
    assert_refused(guarded.call("GET", "/v1/models"), (401,), "a valid API key is needed")
    wrong = guarded.call("GET", "/v1/models", headers={"Authorization": "Bearer s3cret-kez"})
    assert wrong.status == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert guarded.call("GET", "/metrics").status == 401
    assert guarded.call("GET", "/v1/models", headers=key).status == 200
    assert guarded.call("GET", "/health").status == 200  # the load balancer's probe needs none
    assert guarded.call("GET", "/").status == 200
    preflight = {"Origin": "https://studio.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}  # fmt: skip
    allowed = guarded.call("OPTIONS", "/v1/tts", headers=preflight)
    assert allowed.status == 200
    assert allowed.headers["access-control-allow-origin"] == "https://studio.example"
    other = guarded.call(
        "OPTIONS", "/v1/tts", headers=preflight | {"Origin": "https://evil.example"}
    )
    assert other.headers.get("access-control-allow-origin") is None
    rebound = guarded.call("GET", "/", headers={"Host": "evil.example:8000"})
    assert_refused(rebound, (400,), "does not answer to the host 'evil.example:8000'")
    assert (
        guarded.call("GET", "/health", headers={"Host": f"localhost:{guarded.port}"}).status == 200
    )


def wait_for(server: ServerProcess, key: str, count: int) -> None:
    """Until /health shows `count` requests `key` (running or waiting); fails after 30 s."""
    reached = server.health_when(lambda health: health[key] >= count, time.perf_counter())
    assert reached is not None, f"never {count} {key}"


def test_sigterm_answers_the_queue_and_finishes_the_running(piper_import) -> None:
    """One worker busy (22 s of audio, about 2 s of work), five waiting: on SIGTERM the waiting
    get 503 at once, the running one finishes (200), and the server exits 0 saying so."""
    with spawn([str(piper_import.path), "--workers", "1"]) as served:
        replies: list[tuple[float, int]] = []

        def send(text: str) -> None:
            reply = served.call("POST", "/v1/tts", {"text": text, "noise_scale": 0.0})
            replies.append((time.perf_counter(), reply.status))

        threads = [threading.Thread(target=send, args=(LONG_ENGLISH,))]
        threads[0].start()
        wait_for(served, "running", 1)
        threads += [threading.Thread(target=send, args=("Hello there.",)) for _ in range(5)]
        for thread in threads[1:]:
            thread.start()
        wait_for(served, "waiting", 5)
        assert served.process is not None
        signalled = time.perf_counter()
        served.process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(60)
        assert served.process.wait(60) == 0
    statuses = sorted(status for _, status in replies)
    assert statuses == [200, 503, 503, 503, 503, 503], statuses
    assert all(at - signalled < 1.0 for at, status in replies if status == 503)
    assert "5 waiting turned away with 503" in "".join(served.log)


def test_sigterm_past_the_grace_period_says_so(piper_import) -> None:
    """74 s of audio (6 s of work) and half a second's grace: the request gets 503, and the
    exit status and the last line say it was cut off."""
    with spawn([str(piper_import.path), "--grace", "0.5"]) as served:
        slow = {"text": LONG_ENGLISH, "speed": 0.25, "noise_scale": 0.0}
        replies: list[Reply] = []
        thread = threading.Thread(
            target=lambda: replies.append(served.call("POST", "/v1/tts", slow))
        )
        thread.start()
        wait_for(served, "running", 1)
        assert served.process is not None
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(60) == 1
        thread.join(60)
    assert_refused(replies[0], (503,), "the server stopped before this request finished")
    assert "stopped with 1 request(s) cut off after the 0.5 s grace period" in "".join(served.log)
