"""Stopping one request's work early (its client has gone, say): a token that the thread doing
the work carries. Every graph run checks it first, and a run in progress is asked to end (ONNX
Runtime's RunOptions.terminate), so the work stops at its next step and frees its thread."""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")


class Cancelled(Exception):
    """The work was cancelled before it finished."""


class Token:
    """One request's cancellation: set once, seen by the graph runs of the thread carrying it."""

    def __init__(self) -> None:
        self.cancelled = False
        self._stops: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def cancel(self) -> None:
        """Cancel the work, ending the graph run in progress where the backend can."""
        with self._lock:
            self.cancelled = True
            stops = list(self._stops)
        for stop in stops:
            stop()

    @contextmanager
    def watching(self, stop: Callable[[], None]) -> Iterator[None]:
        """See `stoppable`."""
        with self._lock:
            self._stops.append(stop)
            already = self.cancelled
        if already:
            stop()
        try:
            yield
        except Exception as exc:
            if self.cancelled:
                raise Cancelled from exc
            raise
        finally:
            with self._lock:
                self._stops.remove(stop)

    def carry(self, work: Callable[..., T], *args: Any) -> T:
        """`work(*args)` with this token as the current thread's."""
        held = _current.set(self)
        try:
            return work(*args)
        finally:
            _current.reset(held)


_current: ContextVar[Token | None] = ContextVar("speedy_cancel_token", default=None)


def check() -> None:
    """Raise `Cancelled` if the current thread's work was cancelled."""
    token = _current.get()
    if token is not None and token.cancelled:
        raise Cancelled


@contextmanager
def stoppable(stop: Callable[[], None]) -> Iterator[None]:
    """While inside, a cancel of the current thread's work calls `stop` (at once if it already
    was cancelled); `Cancelled` replaces whatever the stopped call raised."""
    token = _current.get()
    if token is None:
        yield
    else:
        with token.watching(stop):
            yield
