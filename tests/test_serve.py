"""`speedy serve`: every endpoint and error over real HTTP on a free loopback port, the bounded
queue's 503s, streaming, and a SIGTERM that finishes the request in flight."""

import io
import json
import re
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import soundfile as sf

from speedy import runtime
from speedy.chain import Chain
from speedy.recipe import DEFAULT_DATA
from speedy.tasks import task_for
from tests.serve_client import JSON, Reply, ServerProcess, spawn
from tests.test_cli_errors import assert_clean_error

pytest.importorskip("pypinyin", reason="Chinese text needs the [text] extra (pypinyin)")
pytest.importorskip("uvicorn", reason="serving needs the [serve] extra (starlette, uvicorn)")
TEXT = "你好，世界！Hello, world."
CLIP = DEFAULT_DATA / "LJ001-0008.wav"


def audio_of(reply: Reply) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(io.BytesIO(reply.body), dtype="float32")
    return audio, rate


@pytest.fixture(scope="module")
def server(sambert_build, tiny_build) -> Iterator[ServerProcess]:
    """The tiny Sambert with two tiny HiFi-GAN artifacts (two voices); one worker, one queued."""
    with spawn([
        str(sambert_build["simplify"].path),
        f"fp32={tiny_build['export'].path}",
        f"slim={tiny_build['simplify'].path}",
        "--workers", "1", "--queue", "1", "--max-chars", "200", "--max-body-mb", "1",
        "--chunk-seconds", "0.1",
    ]) as served:  # fmt: skip
        yield served


def voice_names(server: ServerProcess) -> list[str]:
    return [v["name"] for v in server.call("GET", "/v1/models").json()["voices"]]


def test_binds_loopback_and_lists_models_and_voices(server) -> None:
    assert server.host == "127.0.0.1"
    health = server.call("GET", "/health")
    assert health.status == 200 and health.json()["status"] == "ok"
    catalog = server.call("GET", "/v1/models").json()
    models = {m["name"]: m for m in catalog["models"]}
    assert {"fp32", "slim"} <= set(models) and len(models) == 3
    assert models["slim"]["task"] == "vocoder" and models["slim"]["precision"] == "fp32"
    assert models["slim"]["size_mb"] > 0 and models["slim"]["quality"]["parity"]["passed"]
    assert list(catalog["uploads"]) == ["fp32", "slim"] and "WAV" in catalog["uploads"]["slim"]
    (acoustic,) = [m for m in models.values() if m["task"] == "text_to_mel"]
    voices = catalog["voices"]
    assert [v["name"] for v in voices] == [f"{acoustic['name']}+fp32", f"{acoustic['name']}+slim"]
    assert voices[0]["choices"]["emotion"][:2] == ["neutral", "happy"]
    assert "reference" not in voices[0]["controls"]["properties"]  # no file paths over HTTP
    page = server.call("GET", "/")
    assert page.status == 200 and 'id="play-a"' in page.body.decode()


def test_tts_is_the_chain_output(server, sambert_build, tiny_build) -> None:
    voice = voice_names(server)[1]
    reply = server.call(
        "POST", "/v1/tts", {"voice": voice, "text": TEXT, "speaker": 1, "emotion": "happy"}
    )
    assert reply.status == 200 and reply.headers["content-type"] == "audio/wav"
    audio, rate = audio_of(reply)
    chain = Chain.load(sambert_build["simplify"].path, tiny_build["simplify"].path)
    expected = chain(text=TEXT, speaker=1, emotion="happy").audio
    assert rate == 22050 and audio.size == expected.size
    assert np.abs(audio - np.clip(expected, -1, 1)).max() <= 2 / 32767  # 16-bit rounding
    assert float(reply.headers["x-audio-seconds"]) == pytest.approx(audio.size / rate, abs=1e-3)
    assert float(reply.headers["x-rtf"]) > 0
    assert set(json.loads(reply.headers["x-stage-seconds"])) == {"front_end", "acoustic", "vocoder"}


def test_tts_streams_in_chunks_equal_to_the_whole(server) -> None:
    request = {"text": TEXT, "speaker": 2, "speed": 0.8}
    whole, _ = audio_of(server.call("POST", "/v1/tts", request))
    connection = server.connect()
    connection.request("POST", "/v1/tts?stream=1", json.dumps(request), JSON)
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("transfer-encoding") == "chunked"
    pieces = []
    while piece := response.read1(1 << 16):
        pieces.append(piece)
    body = b"".join(pieces)
    assert body[:4] == b"RIFF" and len(pieces) > 2
    streamed = np.frombuffer(body[44:], "<i2").astype(np.float32) / 32767
    assert streamed.size == whole.size
    assert np.abs(streamed - whole).max() < 1e-3  # exact seams: receptive-field context


def test_vocode_takes_wav_and_npy(server, tiny_build) -> None:
    wav_reply = server.call("POST", "/v1/vocode?model=slim", CLIP.read_bytes())
    assert wav_reply.status == 200
    audio, rate = audio_of(wav_reply)
    model = runtime.load(tiny_build["simplify"].path)
    task = task_for(model.manifest.model)
    mel = task.read_upload(CLIP.read_bytes())
    assert audio.size == mel.shape[1] * 256 and rate == 22050
    buffer = io.BytesIO()
    np.save(buffer, mel)
    npy_reply = server.call("POST", "/v1/vocode", buffer.getvalue())
    assert npy_reply.status == 200  # the first upload model: fp32, the same network
    np.testing.assert_allclose(audio_of(npy_reply)[0], audio, atol=3 / 32767)


@pytest.mark.parametrize(
    ("path", "body", "status", "phrase"),
    [
        ("/v1/tts", "{not json", 400, "malformed JSON"),
        ("/v1/tts", "[1, 2]", 400, "not an object"),
        ("/v1/vocode", b"RIFF....WAVEnot audio", 400, "cannot read the upload"),
        ("/v1/vocode", np.zeros(3).tobytes(), 400, "cannot read the upload"),
        ("/v1/tts", {"text": "好" * 201}, 413, "201 characters is over 200"),
        ("/v1/vocode", b"0" * 1_100_000, 413, "over 1000000"),
        ("/v1/tts", {"text": TEXT, "speaker": 9}, 422, "speaker 9 is out of range"),
        ("/v1/tts", {"text": TEXT, "emotion": "bored"}, 422, "unknown emotion 'bored'"),
        ("/v1/tts", {"text": TEXT, "speed": "fast"}, 422, "speed:"),
        ("/v1/tts", {"text": TEXT, "reference": "/etc/passwd"}, 422, "reference: Extra inputs"),
        ("/v1/tts", {"speaker": 1}, 422, "text: Field required"),
        ("/v1/tts", {"text": TEXT, "voice": "../x"}, 404, "unknown voice '../x'"),
        ("/v1/vocode?model=/etc/passwd", CLIP.read_bytes(), 404, "unknown model '/etc/passwd'"),
        ("/v1/nothing", "", 404, "Not Found"),
    ],
)
def test_bad_requests_get_json_errors(server, path, body, status, phrase) -> None:
    reply = server.call("POST" if path.startswith("/v1/") else "GET", path, body)
    assert reply.status == status, reply.body
    error = reply.json()
    assert phrase in error["error"] and error["fix"]


def test_wrong_method_and_a_mel_of_another_size(server) -> None:
    assert server.call("GET", "/v1/tts").status == 405
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((40, 50), np.float32))
    reply = server.call("POST", "/v1/vocode", buffer.getvalue())
    assert reply.status == 422 and "size 40 on axis 1, the model needs 80" in reply.json()["error"]


def test_beyond_the_queue_requests_get_503_with_retry_after(server) -> None:
    """One worker and one place in the queue: of six requests sent at once, some are turned
    away at once with Retry-After, the others answered; the server carries on."""
    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(0).normal(-5, 2, (80, 2048)).astype(np.float32))
    gate, replies = threading.Barrier(6), []

    def send() -> None:
        gate.wait()
        replies.append(server.call("POST", "/v1/vocode", buffer.getvalue()))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    statuses = sorted(r.status for r in replies)
    assert set(statuses) == {200, 503} and statuses.count(200) >= 2, statuses
    busy = next(r for r in replies if r.status == 503)
    assert int(busy.headers["retry-after"]) >= 1 and "busy" in busy.json()["error"]
    metrics = server.call("GET", "/metrics").body.decode()
    assert 'speedy_requests_total{endpoint="vocode",status="503"}' in metrics
    assert re.search(r'speedy_request_seconds_count\{endpoint="vocode"\} \d+', metrics)
    assert 'speedy_rtf_bucket{endpoint="vocode",le="+Inf"}' in metrics
    assert "speedy_requests_waiting 0" in metrics
    assert server.call("GET", "/health").status == 200


def test_sigterm_finishes_the_stream_in_flight(sambert_build, tiny_build) -> None:
    with spawn([
        str(sambert_build["simplify"].path), str(tiny_build["simplify"].path),
        "--chunk-seconds", "0.05",
    ]) as served:  # fmt: skip
        connection = served.connect()
        connection.request("POST", "/v1/tts?stream=1", json.dumps({"text": TEXT * 3}), JSON)
        response = connection.getresponse()
        first = response.read1(1 << 10)
        assert served.process is not None
        served.process.send_signal(signal.SIGTERM)
        rest = response.read()
        assert served.process.wait(60) == 0
        assert "stopped: the running requests were finished" in "".join(served.log)
    samples = (len(first) + len(rest) - 44) // 2
    whole = Chain.load(sambert_build["simplify"].path, tiny_build["simplify"].path)(text=TEXT * 3)
    assert samples == whole.audio.size


def test_startup_errors_are_one_line(speedy_cli, sambert_build, tiny_build) -> None:
    code, _, err = speedy_cli("serve", str(sambert_build["simplify"].path), "--port", "0")
    assert_clean_error(code, err, "no served vocoder takes it", "--vocoder")
    with socket_taken() as port:
        code, _, err = speedy_cli("serve", str(tiny_build["simplify"].path), "--port", str(port))
    assert_clean_error(code, err, f"cannot listen on 127.0.0.1:{port}", "--port")


@contextmanager
def socket_taken() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_serve_help_names_the_endpoints(speedy_cli) -> None:
    code, out, _ = speedy_cli("serve", "--help")
    assert code == 0 and "/v1/tts" in out and "--workers" in out
