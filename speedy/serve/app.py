"""The HTTP API and web page over a catalog of loaded artifacts (Starlette, run by uvicorn).

    POST /v1/tts           JSON {voice?, text, and the voice's controls} -> WAV; ?stream=1 chunks
    POST /v1/audio/speech  the OpenAI speech API: {model, input, voice, response_format, speed,
                           stream_format} -> wav, pcm, flac, mp3 or opus
    POST /v1/vocode        a WAV/FLAC/OGG file or a log-mel .npy (?model=NAME) -> WAV (a codec:
                           the audio through its codes)
    POST /v1/codes         a WAV/FLAC/OGG file (?model=NAME, a codec) -> JSON: its codes
                           (codebooks x frames) and frame rate
    GET  /v1/models        the artifacts, their voices and controls
    GET  /v1/audio/voices  the voices in the OpenAI API's terms
    GET  /health, /metrics, and / (the page: listen to two voices side by side, or blind)

Every step that costs CPU (reading an upload, the text front end, each graph run) runs in the
bounded worker pool, after limits that cost nothing (body size, JSON depth, the controls' ranges)
and carrying the request's cancellation: a client that leaves stops its work at the next graph
call. Errors are JSON `{"error": ..., "fix": ...}`: 400 malformed body, 401 no API key, 404
unknown voice or model, 408 a body too slow, 413 body, text or audio over the limit, 415 not
JSON, 422 a control out of range, 503 busy or stopping (with Retry-After).
"""

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from importlib.resources import files
from typing import Any, TypeVar

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from speedy.cancel import Token
from speedy.chain import Synthesis
from speedy.errors import OutOfRange, SpeedyError
from speedy.serve import openai
from speedy.serve.admission import Admission, Busy
from speedy.serve.audio_stream import AudioStream
from speedy.serve.catalog import Catalog, Served, Unknown, Voice
from speedy.serve.gone import ClientGone, unless_gone
from speedy.serve.metrics import Metrics
from speedy.serve.reading import (
    JSON_BYTES,
    Limits,
    Problem,
    name_of,
    parse_json,
    read_body,
    validated,
)
from speedy.serve.wav import MEDIA_TYPES, encoded, header, pcm16
from speedy.tasks.codec import Codec

T = TypeVar("T")
PAGE = files("speedy") / "serve" / "page.html"
REPORT = "see the server's log, and report it"
log = logging.getLogger("speedy.serve")


def _error(status: int, problem: str, fix: str = "", headers: dict | None = None) -> Response:
    return JSONResponse({"error": problem, "fix": fix}, status, headers)


ErrorShape = Callable[[int, str, str, dict | None], Response]  # like `_error`


def _as_error(endpoint: str, exc: Exception, error: ErrorShape = _error) -> Response:
    """The JSON error response (made by `error`) of an exception a route raised."""
    if isinstance(exc, Problem):
        return error(
            exc.status, exc.problem, exc.fix, {"Connection": "close"} if exc.close else None
        )
    if isinstance(exc, Busy):
        return error(503, str(exc), "retry later", {"Retry-After": str(exc.retry_after)})
    if isinstance(exc, Unknown):
        return error(404, exc.problem, exc.fix)
    if isinstance(exc, OutOfRange):
        return error(413, f"too large for this model: {exc.problem}", "send shorter text or audio")
    if isinstance(exc, SpeedyError):
        return error(422, exc.problem, exc.fix)
    log.exception("%s failed", endpoint)
    return error(500, f"internal error: {type(exc).__name__}", REPORT)


class Server:
    """The routes, the catalog they serve, admission and metrics."""

    def __init__(self, catalog: Catalog, admission: Admission, limits: Limits) -> None:
        self.catalog, self.admission, self.limits = catalog, admission, limits
        self.cut = 0  # requests still running when the server stopped waiting for them
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
            Route("/v1/audio/voices", self.counted("voices", self.voices)),
            Route("/v1/tts", self.counted("tts", self.tts), methods=["POST"]),
            Route(
                "/v1/audio/speech",
                self.counted("speech", self.speech, openai.error),
                methods=["POST"],
            ),
            Route("/v1/vocode", self.counted("vocode", self.vocode), methods=["POST"]),
            Route("/v1/codes", self.counted("codes", self.codes), methods=["POST"]),
        ]

        async def http_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, HTTPException)
            return _error(exc.status_code, exc.detail, "see GET /v1/models and the README")

        return Starlette(routes=routes, exception_handlers={HTTPException: http_error})

    def counted(
        self,
        endpoint: str,
        handler: Callable[[Request], Awaitable[Response]],
        error: ErrorShape = _error,
    ) -> Callable[[Request], Awaitable[Response]]:
        """`handler` with its errors turned into JSON and each request counted and timed (a
        stream when it ends; a client that left as a disconnect, not an error)."""

        async def route(request: Request) -> Response:
            start = time.perf_counter()
            try:
                response = await handler(request)
            except ClientGone as gone:
                self.metrics.disconnected(gone.endpoint or endpoint)
                return Response(status_code=499)  # nobody reads it
            except asyncio.CancelledError:
                if not self.admission.draining:
                    raise
                self.cut += 1  # cancelled by the server's shutdown: its work was stopped
                response = error(
                    503,
                    "the server stopped before this request finished",
                    "send it again",
                    {"Retry-After": "1", "Connection": "close"},
                )
            except Exception as exc:
                response = _as_error(endpoint, exc, error)
            if not isinstance(response, AudioStream):
                self.metrics.record(endpoint, response.status_code, time.perf_counter() - start)
            return response

        return route

    # Plain routes.
    async def page(self, request: Request) -> Response:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    async def health(self, request: Request) -> Response:
        a = self.admission
        status = "draining" if a.draining else "ok"
        return JSONResponse(
            {"status": status, "running": a.running, "waiting": a.waiting},
            503 if a.draining else 200,
        )

    async def prometheus(self, request: Request) -> Response:
        return PlainTextResponse(self.metrics.render(), media_type="text/plain; version=0.0.4")

    async def models(self, request: Request) -> Response:
        return JSONResponse(self.catalog.describe())

    async def voices(self, request: Request) -> Response:
        return JSONResponse(openai.voices(self.catalog))

    # Speech.
    async def _json(self, request: Request) -> dict[str, Any]:
        kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if kind != "application/json":
            raise Problem(
                415,
                f"the body is '{kind or 'untyped'}', not JSON",
                "send Content-Type: application/json",
            )
        body = await read_body(request, min(self.limits.max_body, JSON_BYTES), self.limits.read_s)
        return parse_json(body)

    def _check_text(self, text: Any) -> None:
        if isinstance(text, str) and len(text) > self.limits.max_chars:
            raise Problem(
                413,
                f"text of {len(text)} characters is over {self.limits.max_chars}",
                "split the text",
            )

    async def tts(self, request: Request) -> Response:
        fields = await self._json(request)
        voice = self.catalog.voice(name_of(fields.pop("voice", None), "voice"))
        self._check_text(fields.get("text"))
        controls = validated(voice.task.Request, fields).model_dump()
        if request.query_params.get("stream") in ("1", "true"):
            if voice.streamer is None:
                raise Problem(422, f"{voice.name} does not stream", "leave out stream=1")
            return await self._stream(request, voice, controls, "wav", "tts_stream")
        return await self._whole(request, voice, controls, "wav", "tts")

    async def speech(self, request: Request) -> Response:
        """The OpenAI speech API over the same voices."""
        fields = await self._json(request)
        self._check_text(fields.get("input"))
        asked = validated(openai.SpeechRequest, fields)
        voice = self.catalog.voice(asked.model)
        controls = validated(voice.task.Request, openai.controls(asked, voice)).model_dump()
        if asked.stream_format is None or voice.streamer is None:  # the latter: one chunk
            return await self._whole(request, voice, controls, asked.response_format, "speech")
        sse = asked.stream_format == "sse"
        return await self._stream(request, voice, controls, asked.response_format, "speech", sse)

    async def _work(self, request: Request, work: Callable[[], T]) -> T:
        """`work()` in a worker slot, stopped if the client leaves."""
        token = Token()

        async def held() -> T:
            async with self.admission.slot():
                return await self.admission.run(token, work)

        return await unless_gone(held(), request.receive)

    async def _whole(
        self, request: Request, voice: Voice, controls: dict[str, Any], format: str, endpoint: str
    ) -> Response:
        synthesis: Synthesis = await self._work(request, lambda: voice.chain(**controls))
        rtf = synthesis.rtf()
        self.metrics.rtf.observe(endpoint, rtf["total"])
        data = encoded(synthesis.audio, synthesis.sample_rate, format)
        return self._audio(data, format, synthesis.sample_rate, rtf["total"], {
            "X-Audio-Seconds": f"{synthesis.audio_seconds:.4f}",
            "X-Compute-Seconds": f"{sum(synthesis.seconds.values()):.4f}",
            "X-Stage-Seconds": json.dumps({k: round(v, 4) for k, v in synthesis.seconds.items()}),
        })  # fmt: skip

    async def _stream(
        self,
        request: Request,
        voice: Voice,
        controls: dict[str, Any],
        format: str,
        endpoint: str,
        sse: bool = False,
    ) -> Response:
        """The voice's audio in chunks as its vocoder streams them, holding a slot until done;
        the first chunk is made before the response starts."""
        if format not in ("wav", "pcm"):
            raise Problem(
                422, f"{format} cannot be streamed", "stream wav or pcm, or leave out stream_format"
            )
        token, held, start = Token(), AsyncExitStack(), time.perf_counter()
        rate, made, ended = voice.chain.sample_rate, [0], [False]

        def piece(chunks: Iterator[np.ndarray]) -> bytes | None:
            chunk = next(chunks, None)
            if chunk is None:
                return None
            made[0] += chunk.size
            data = pcm16(chunk)
            return openai.sse_delta(data) if sse else data

        def begin() -> tuple[Iterator[np.ndarray], bytes]:
            chunks = voice.stream(controls)
            first = piece(chunks)
            assert first is not None
            opening = header(rate, None) if format == "wav" else b""
            if sse and opening:
                opening = openai.sse_delta(opening)
            return chunks, opening + first

        async def more() -> bytes | None:
            if ended[0]:
                return None
            data = await self.admission.run(token, piece, chunks)
            ended[0] = data is None
            return openai.sse_done() if ended[0] and sse else data

        async def close(outcome: str) -> None:
            await held.aclose()
            seconds = time.perf_counter() - start
            if outcome == "gone":
                self.metrics.disconnected(endpoint)
            elif outcome == "cut":
                self.cut += 1
            else:
                self.metrics.record(endpoint, 200 if outcome == "ok" else 500, seconds)
            if outcome == "ok" and made[0]:
                self.metrics.rtf.observe(endpoint, seconds * rate / made[0])

        try:
            await unless_gone(held.enter_async_context(self.admission.slot()), request.receive)
            chunks, first = await unless_gone(self.admission.run(token, begin), request.receive)
        except ClientGone:
            await held.aclose()
            raise ClientGone(endpoint) from None
        except BaseException:
            await held.aclose()
            raise
        media = "text/event-stream" if sse else MEDIA_TYPES[format]
        return AudioStream(first, more, close, media, {"X-Sample-Rate": str(rate)})

    def _upload_model(self, request: Request) -> Served:
        """The model taking uploads that `?model=` names (default: the first)."""
        return self.catalog.upload_model(name_of(request.query_params.get("model"), "model"))

    async def _upload(
        self, request: Request, served: Served, run: Callable[[Any], Any]
    ) -> tuple[Any, float]:
        """`run(example)` on the uploaded body read as `served`'s example, and its compute
        seconds, in the worker pool."""
        data = await read_body(request, self.limits.max_body, self.limits.read_s)

        def work() -> tuple[Any, float]:
            try:
                example = served.upload_task.read_upload(data)
            except OutOfRange:
                raise
            except SpeedyError as exc:
                raise Problem(400, exc.problem, exc.fix) from None
            begin = time.perf_counter()
            outputs = run(example)
            return outputs, time.perf_counter() - begin

        return await self._work(request, work)

    async def vocode(self, request: Request) -> Response:
        served = self._upload_model(request)
        audio, compute = await self._upload(request, served, served.vocode)
        if audio is None:
            raise Problem(422, f"{served.name} makes no audio", "vocode with a vocoder")
        rate = served.model.manifest.model.audio.sample_rate
        rtf = compute * rate / audio.size
        self.metrics.rtf.observe("vocode", rtf)
        return self._audio(encoded(audio, rate, "wav"), "wav", rate, rtf, {
            "X-Audio-Seconds": f"{audio.size / rate:.4f}",
            "X-Compute-Seconds": f"{compute:.4f}",
        })  # fmt: skip

    async def codes(self, request: Request) -> Response:
        served = self._upload_model(request)
        task = served.task
        if not isinstance(task, Codec):
            raise Problem(422, f"{served.name} makes no codes", "send audio to a codec model")
        codes, compute = await self._upload(
            request, served, lambda example: task.encode(served.model, example[None, None])
        )
        rate = served.model.manifest.model.audio.sample_rate
        self.metrics.rtf.observe("codes", compute * rate / (codes.shape[-1] * task.hop))
        return JSONResponse({
            "model": served.name,
            "frame_rate": rate / task.hop,
            "codebooks": int(codes.shape[1]),
            "frames": int(codes.shape[2]),
            "codes": codes[0].tolist(),
        })  # fmt: skip

    @staticmethod
    def _audio(
        data: bytes, format: str, rate: int, rtf: float, headers: dict[str, str]
    ) -> Response:
        headers = {**headers, "X-RTF": f"{rtf:.4f}", "X-Sample-Rate": str(rate)}
        return Response(data, media_type=MEDIA_TYPES[format], headers=headers)
