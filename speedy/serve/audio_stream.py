"""A streamed audio response whose chunks are made one worker call at a time while it is sent.

The first chunk is made before the response starts, so a request that fails at once gets its
error status, not a 200 and a cut connection. After that, the stream ends early when its client
leaves (the chunk in progress is cancelled) and, through the server's send timeout, when its
client stops reading; `close` always learns how it ended and frees what the stream held."""

import asyncio
from collections.abc import Awaitable, Callable

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from speedy.serve.gone import ClientGone, unless_gone

# How a stream ended: "ok", "gone" (its client left), "cut" (cancelled: the server stopped) or
# "failed" (the model or the connection failed).
Close = Callable[[str], Awaitable[None]]


class AudioStream(Response):
    """`first`, then each of `more()`'s chunks until it gives None."""

    def __init__(
        self,
        first: bytes,
        more: Callable[[], Awaitable[bytes | None]],
        close: Close,
        media_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.first, self.more, self.close = first, more, close
        self.media_type = media_type
        self.status_code = 200
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        outcome = "failed"
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            chunk: bytes | None = self.first
            while chunk is not None:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                chunk = await unless_gone(self.more(), receive)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            outcome = "ok"
        except ClientGone:
            outcome = "gone"
        except asyncio.CancelledError:
            outcome = "cut"
            raise
        finally:
            await asyncio.shield(self.close(outcome))
