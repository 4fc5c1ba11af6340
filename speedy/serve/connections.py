"""HTTP connections that cannot hold the server open: a client gets `head_s` seconds to send the
head of each request (uvicorn arms no timer before a request's head has arrived, so a connection
that sends nothing, or half a head, would stay open until the client closed it)."""

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol


class TimedH11(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head is late."""

    head_s = 10.0
    _late: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self._arm()  # the bytes of a new request's head are arriving
        before = self.cycle
        super().data_received(data)
        if self.cycle is not before:  # a whole head arrived
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # the idle connection is uvicorn's keep-alive timer's now

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._late is None:
            self._late = self.loop.call_later(self.head_s, self._close_late)

    def _disarm(self) -> None:
        if self._late is not None:
            self._late.cancel()
            self._late = None

    def _close_late(self) -> None:
        self._late = None
        self.transport.close()


def timed_protocol(head_s: float) -> type[TimedH11]:
    """The protocol class to give uvicorn, with `head_s` as its head timeout."""
    return type("TimedH11", (TimedH11,), {"head_s": head_s})
