"""Clients that leave: noticed while their request's work runs, so that the work stops at its next
step and frees its worker (a disconnect is counted as such, never as a server error)."""

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.types import Receive

T = TypeVar("T")


class ClientGone(Exception):
    """The client closed its connection before its response was sent (`endpoint`: what it was
    counted as, where not the route's own name)."""

    def __init__(self, endpoint: str | None = None) -> None:
        super().__init__(endpoint)
        self.endpoint = endpoint


async def disconnected(receive: Receive) -> None:
    """Return once the client has gone (call after the request's body is read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_gone(work: Awaitable[T], receive: Receive) -> T:
    """`work`'s result; if the client leaves first, `work` is cancelled (and waited for) and
    `ClientGone` raised."""
    task, gone = asyncio.ensure_future(work), asyncio.ensure_future(disconnected(receive))
    try:
        await asyncio.wait([task, gone], return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():  # the client left, or this request itself was cancelled
            task.cancel()
            await asyncio.wait([task])
    if task.cancelled() and gone.done() and not gone.cancelled():
        raise ClientGone
    return task.result()
