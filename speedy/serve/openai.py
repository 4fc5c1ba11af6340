"""The OpenAI speech API's terms (`POST /v1/audio/speech`), the contract most TTS servers speak:
`model` names one of the server's voices (as `/v1/models` lists them), `voice` one of its
speakers ("default", or a speaker's number), `input` the text; `speed`, `response_format` and
`stream_format` as OpenAI defines them. Audio is at the model's own rate (X-Sample-Rate), not
OpenAI's 24 kHz; `pcm` is 16-bit little-endian mono."""

import base64
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from starlette.responses import JSONResponse, Response

from speedy.serve.catalog import Catalog, Unknown, Voice
from speedy.tasks.capabilities import Speed

DEFAULT_VOICE = "default"  # the model's first speaker


class SpeechRequest(BaseModel):
    """An OpenAI speech request, as far as this server can honour it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str
    input: str
    voice: str
    response_format: Literal["wav", "pcm", "flac", "mp3", "opus"] = "mp3"  # OpenAI's default
    speed: Speed = 1.0
    stream_format: Literal["audio", "sse"] | None = None  # None: whole, with its length


def speakers(voice: Voice) -> list[str]:
    """The names `voice` may take in a request: "default" and the speakers' numbers."""
    return [DEFAULT_VOICE, *map(str, voice.task.choices().get("speaker", []))]


def controls(request: SpeechRequest, voice: Voice) -> dict[str, Any]:
    """The voice's own request fields for an OpenAI request."""
    names = speakers(voice)
    if request.voice not in names:
        raise Unknown(
            f"unknown voice '{request.voice}' for model '{voice.name}'",
            f"use one of: {', '.join(names)} (GET /v1/audio/voices lists them)",
        )
    fields: dict[str, Any] = {"text": request.input}
    if "speed" in request.model_fields_set:
        fields["speed"] = request.speed
    if request.voice != DEFAULT_VOICE:
        fields["speaker"] = int(request.voice)
    return fields


def voices(catalog: Catalog) -> dict[str, Any]:
    """`GET /v1/audio/voices`: each model (a served voice) with the voices it takes."""
    return {
        "models": [
            {
                "model": voice.name,
                "voices": speakers(voice),
                "sample_rate": voice.chain.sample_rate,
                "streams": voice.streamer is not None,
            }
            for voice in catalog.voices.values()
        ]
    }


def error(status: int, problem: str, fix: str = "", headers: dict | None = None) -> Response:
    """An error in the OpenAI API's shape (its clients show `error.message`), with the fix."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    message = f"{problem} (fix: {fix})" if fix else problem
    body = {"message": message, "type": kind, "param": None, "code": status, "fix": fix}
    return JSONResponse({"error": body}, status, headers)


def sse_delta(data: bytes) -> bytes:
    """A server-sent event carrying the next bytes of the audio."""
    event = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()}
    return f"data: {json.dumps(event)}\n\n".encode()


def sse_done() -> bytes:
    """The event that ends a stream of audio deltas."""
    return b'data: {"type": "speech.audio.done"}\n\n'
