"""The HTTP API and web page over a catalog of loaded artifacts (Starlette, run by uvicorn).

    POST /v1/tts           JSON {voice?, text, and the voice's controls} -> WAV; ?stream=1 chunks
    POST /v1/vocode        a WAV/FLAC/OGG file or a log-mel .npy (?model=NAME) -> WAV
    GET  /v1/models        the artifacts, their voices and controls
    GET  /health, /metrics, and / (the page: listen to two voices side by side)

Errors are JSON `{"error": ..., "fix": ...}`: 400 malformed body, 404 unknown voice or model,
413 body or text over the limit, 422 a control out of range, 503 busy (with Retry-After).
"""

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from speedy.errors import SpeedyError, first_invalid
from speedy.serve.admission import Admission, Busy
from speedy.serve.catalog import Catalog, Unknown, Voice
from speedy.serve.metrics import Metrics
from speedy.serve.wav import header, pcm16, wav

PAGE = files("speedy") / "serve" / "page.html"
REPORT = "see the server's log, and report it"
log = logging.getLogger("speedy.serve")


@dataclass(frozen=True)
class Limits:
    """What one request may carry."""

    max_body: int  # bytes
    max_chars: int  # of text


class Problem(Exception):
    """A request the server refuses: HTTP status, what is wrong and how to fix it."""

    def __init__(self, status: int, problem: str, fix: str = "") -> None:
        super().__init__(problem)
        self.status, self.problem, self.fix = status, problem, fix


def _error(status: int, problem: str, fix: str = "", headers: dict | None = None) -> Response:
    return JSONResponse({"error": problem, "fix": fix}, status, headers)


async def _body(request: Request, limits: Limits) -> bytes:
    """The request's body, refused (413) as soon as it passes the limit."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_body:
        raise Problem(413, f"body of {declared} bytes is over {limits.max_body}", "send less")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limits.max_body:
            raise Problem(413, f"body is over {limits.max_body} bytes", "send less")
    return bytes(body)


def _fields(body: bytes, limits: Limits) -> dict[str, Any]:
    """A JSON object's fields; 400 when it is not one, 413 for text over the limit."""
    try:
        fields = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise Problem(400, f"malformed JSON: {exc}", 'send {"text": "..."}') from None
    if not isinstance(fields, dict):
        raise Problem(400, "the JSON body is not an object", 'send {"text": "..."}')
    text = fields.get("text")
    if isinstance(text, str) and len(text) > limits.max_chars:
        raise Problem(
            413, f"text of {len(text)} characters is over {limits.max_chars}", "split the text"
        )
    return fields


def _controls(voice: Voice, fields: dict[str, Any]) -> dict[str, Any]:
    """The voice's typed controls from a request's fields (422 when one is wrong)."""
    task = voice.acoustic.task
    assert task.Request is not None
    try:
        return task.Request.model_validate(fields).model_dump()
    except ValidationError as exc:
        raise Problem(
            422,
            first_invalid(exc, "body"),
            f"controls are {', '.join(task.Request.model_fields)}",
        ) from None


class Server:
    """The routes, the catalog they serve, admission and metrics."""

    def __init__(self, catalog: Catalog, admission: Admission, limits: Limits) -> None:
        self.catalog, self.admission, self.limits = catalog, admission, limits
        self.metrics = Metrics(
            {
                "speedy_requests_running": ("Requests in a worker.", lambda: admission.running),
                "speedy_requests_waiting": ("Requests in the queue.", lambda: admission.waiting),
            }
        )

    def app(self) -> Starlette:
        routes = [
            Route("/", self.counted("page", self.page)),
            Route("/health", self.counted("health", self.health)),
            Route("/metrics", self.counted("metrics", self.prometheus)),
            Route("/v1/models", self.counted("models", self.models)),
            Route("/v1/tts", self.counted("tts", self.tts), methods=["POST"]),
            Route("/v1/vocode", self.counted("vocode", self.vocode), methods=["POST"]),
        ]

        async def http_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, HTTPException)
            return _error(exc.status_code, exc.detail, "see GET /v1/models and the README")

        return Starlette(routes=routes, exception_handlers={HTTPException: http_error})

    def counted(
        self, endpoint: str, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """`handler` with its errors turned into JSON and each request counted and timed."""

        async def route(request: Request) -> Response:
            start = time.perf_counter()
            try:
                response = await handler(request)
            except Problem as exc:
                response = _error(exc.status, exc.problem, exc.fix)
            except Busy as exc:
                response = _error(
                    503, str(exc), "retry later", {"Retry-After": str(exc.retry_after)}
                )
            except Unknown as exc:
                response = _error(404, exc.problem, exc.fix)
            except SpeedyError as exc:
                response = _error(422, exc.problem, exc.fix)
            except Exception as exc:
                log.exception("%s failed", endpoint)
                response = _error(500, f"internal error: {type(exc).__name__}", REPORT)
            if not isinstance(response, StreamingResponse):  # a stream counts when it ends
                self.metrics.record(endpoint, response.status_code, time.perf_counter() - start)
            return response

        return route

    async def page(self, request: Request) -> Response:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    async def health(self, request: Request) -> Response:
        a = self.admission
        return JSONResponse({"status": "ok", "running": a.running, "waiting": a.waiting})

    async def prometheus(self, request: Request) -> Response:
        return PlainTextResponse(self.metrics.render(), media_type="text/plain; version=0.0.4")

    async def models(self, request: Request) -> Response:
        return JSONResponse(self.catalog.describe())

    async def tts(self, request: Request) -> Response:
        fields = _fields(await _body(request, self.limits), self.limits)
        voice = self.catalog.voice(fields.pop("voice", None))
        controls = _controls(voice, fields)
        if request.query_params.get("stream") in ("1", "true"):
            return await self.stream(voice, controls)
        async with self.admission.slot():
            synthesis = await self.admission.run(lambda: voice.chain(**controls))
        rtf = synthesis.rtf()
        self.metrics.rtf.observe("tts", rtf["total"])
        return self._audio(wav(synthesis.audio, synthesis.sample_rate), rtf["total"], {
            "X-Audio-Seconds": f"{synthesis.audio_seconds:.4f}",
            "X-Compute-Seconds": f"{sum(synthesis.seconds.values()):.4f}",
            "X-Stage-Seconds": json.dumps({k: round(v, 4) for k, v in synthesis.seconds.items()}),
        })  # fmt: skip

    async def stream(self, voice: Voice, controls: dict[str, Any]) -> Response:
        """The voice's audio in chunks as its vocoder streams them, holding a slot until done."""
        streamer, vocoder = voice.streamer, voice.vocoder
        if streamer is None or vocoder is None:
            raise Problem(422, f"{voice.name} does not stream", "leave out stream=1")
        held = AsyncExitStack()
        await held.enter_async_context(self.admission.slot())
        start = time.perf_counter()
        chain = voice.chain
        try:
            mel = await self.admission.run(lambda: chain.handed(chain.request(**controls)))
        except BaseException:
            await held.aclose()
            raise
        chunks = streamer.stream(vocoder.model, vocoder.task.inputs(mel))
        rate = chain.sample_rate

        async def body() -> AsyncIterator[bytes]:
            status, samples = 500, 0
            try:
                yield header(rate, None)
                while (chunk := await self.admission.run(next, chunks, None)) is not None:
                    samples += chunk.size
                    yield pcm16(chunk)
                status = 200
            finally:
                await held.aclose()
                seconds = time.perf_counter() - start
                self.metrics.record("tts_stream", status, seconds)
                if samples:
                    self.metrics.rtf.observe("tts_stream", seconds * rate / samples)

        return StreamingResponse(body(), media_type="audio/wav")

    async def vocode(self, request: Request) -> Response:
        served = self.catalog.upload_model(request.query_params.get("model"))
        data = await _body(request, self.limits)
        try:
            example = served.task.read_upload(data)
        except SpeedyError as exc:
            raise Problem(400, exc.problem, exc.fix) from None

        def work() -> tuple[Any, float]:
            begin = time.perf_counter()
            outputs = served.task.run(served.model, served.task.inputs(example))
            return outputs, time.perf_counter() - begin

        async with self.admission.slot():
            outputs, compute = await self.admission.run(work)
        (audio, *_) = served.task.waveforms(outputs) or [None]
        if audio is None:
            raise Problem(422, f"{served.name} makes no audio", "vocode with a vocoder")
        rate = served.model.manifest.model.audio.sample_rate
        rtf = compute * rate / audio.size
        self.metrics.rtf.observe("vocode", rtf)
        return self._audio(wav(audio, rate), rtf, {
            "X-Audio-Seconds": f"{audio.size / rate:.4f}",
            "X-Compute-Seconds": f"{compute:.4f}",
        })  # fmt: skip

    @staticmethod
    def _audio(data: bytes, rtf: float, headers: dict[str, str]) -> Response:
        return Response(data, media_type="audio/wav", headers={**headers, "X-RTF": f"{rtf:.4f}"})
