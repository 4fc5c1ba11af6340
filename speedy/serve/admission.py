"""A bounded queue in front of the inference workers: at most `workers` requests run at once,
at most `queue` more wait (for at most `wait_s`); any beyond that are turned away at once. While
the server drains, the waiting and any new requests are turned away at once too."""

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from speedy.cancel import Token

T = TypeVar("T")
SMOOTHING = 0.2  # weight of the newest request in the running mean of service time


class Busy(Exception):
    """The server is at capacity: come back after `retry_after` seconds."""

    def __init__(self, retry_after: int, why: str = "busy") -> None:
        super().__init__(f"the server is {why}: retry in {retry_after} s")
        self.retry_after = retry_after


class Admission:
    """Slots for `workers` requests at once, `queue` more waiting, work on a thread pool (ONNX
    Runtime sessions are thread-safe, so the workers share the loaded sessions)."""

    def __init__(self, workers: int, queue: int, wait_s: float) -> None:
        self.workers, self.limit, self.wait_s = workers, workers + queue, wait_s
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="speedy-infer")
        self._slots: asyncio.Semaphore | None = None
        self.admitted = 0  # running and waiting
        self.running = 0
        self.service_s = 1.0  # running mean of a request's seconds in a slot
        self.draining = False
        self._waits: set[asyncio.Future] = set()  # slot acquisitions in progress
        self.turned_away = 0  # waiting requests answered 503 by `drain`

    @property
    def waiting(self) -> int:
        return self.admitted - self.running

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue ahead, at the mean service time."""
        return max(1, math.ceil(self.service_s * (self.waiting + 1) / self.workers))

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one worker slot for a request; `Busy` when the queue is full, the wait too
        long, or the server is draining."""
        if self._slots is None:  # made in the server's event loop
            self._slots = asyncio.Semaphore(self.workers)
        if self.draining:
            raise Busy(1, "shutting down")
        if self.admitted >= self.limit:
            raise Busy(self.retry_after())
        self.admitted += 1
        try:
            await self._acquire()
            self.running += 1
            start = asyncio.get_running_loop().time()
            try:
                yield
            finally:
                held = asyncio.get_running_loop().time() - start
                self.service_s += SMOOTHING * (held - self.service_s)
                self.running -= 1
                self._slots.release()
        finally:
            self.admitted -= 1

    async def _acquire(self) -> None:
        assert self._slots is not None
        wait = asyncio.ensure_future(asyncio.wait_for(self._slots.acquire(), self.wait_s))
        self._waits.add(wait)
        try:
            await wait
        except TimeoutError:
            raise Busy(self.retry_after()) from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self.draining and task is not None and not task.cancelling():  # by `drain`
                self.turned_away += 1
                raise Busy(1, "shutting down") from None
            raise
        finally:
            self._waits.discard(wait)

    def drain(self) -> None:
        """Turn away the waiting requests and any new ones; the running ones go on."""
        self.draining = True
        for wait in list(self._waits):
            wait.cancel()

    async def run(self, token: Token, work: Callable[..., T], *args: Any) -> T:
        """`work(*args)` on a worker thread, carrying `token`. If this is cancelled (its client
        has gone), so is the work, and the thread is waited for: a slot's thread is free when
        the slot is."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.executor, token.carry, work, *args)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            token.cancel()
            await asyncio.wait([future])
            if not future.cancelled():
                future.exception()  # the work's end (`Cancelled`, mostly) is no news
            raise
