"""Sticky interruption: once SIGINT/SIGTERM arrives, no artifact is published, even if a library
swallowed the KeyboardInterrupt raised for it.

Python cannot raise the KeyboardInterrupt where a weakref callback or finalizer happens to run;
it reports it as "Exception ignored" with a traceback and carries on. That report is silenced:
the request is recorded, and the run stops at its next check. Once the work is over (`settle`),
signals are ignored: a handler written in Python goes back to the default action while the
interpreter shuts down, and a signal then would kill a process that has finished its work.

An interrupted run ends by the signal that stopped it (`exit_by_signal`), after its cleanup, so
the caller sees exit status 128 + signal and a shell loop around it stops too.

A signal handler runs only on the main thread between bytecodes, so not during a long native
call there: `interruptible` runs such calls (every graph run) on a worker thread instead.
"""

import os
import queue
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: int | None = None  # the first SIGINT or SIGTERM of this run
_passed_on = sys.__unraisablehook__  # the hook that reports every other unraisable exception


def _handler(signum: int, frame: object) -> None:
    global _received
    _received = _received or signum
    raise KeyboardInterrupt


def _unraisable(report: "sys.UnraisableHookArgs") -> None:  # a typing-only name
    if report.exc_type is not KeyboardInterrupt:
        _passed_on(report)


def install() -> None:
    """Start a run: route SIGINT and SIGTERM through the sticky handler."""
    global _received, _passed_on
    _received = None
    for sig in SIGNALS:
        signal.signal(sig, _handler)
    if sys.unraisablehook is not _unraisable:
        _passed_on, sys.unraisablehook = sys.unraisablehook, _unraisable


def settle() -> None:
    """The work is over, published or failed: ignore SIGINT and SIGTERM from now on."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def requested() -> bool:
    """Whether SIGINT or SIGTERM arrived during this run."""
    return _received is not None


def check() -> None:
    """Raise KeyboardInterrupt if an interruption was requested at any point."""
    if requested():
        raise KeyboardInterrupt


def exit_by_signal() -> None:
    """End the process by the signal that interrupted the run, if one did; else return.

    An exit status would not be reliable: once a KeyboardInterrupt escaped code that CPython ran
    for a library (seen during torch's export), `python -m` ended by SIGINT regardless."""
    if _received is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(_received, signal.SIG_DFL)
    os.kill(os.getpid(), _received)


class _Worker:
    """One daemon thread that runs calls for the main thread, so that the main thread stays
    free to run signal handlers while a long native call (a graph run) is in progress."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="speedy-call", daemon=True).start()

    def _serve(self) -> None:
        while True:
            work, box, done = self.jobs.get()
            try:
                box.append((True, work()))
            except BaseException as exc:  # handed to the caller as it is
                box.append((False, exc))
            finally:
                done.release()


_worker: _Worker | None = None


def interruptible(work: Callable[[], T], stop: Callable[[], None] | None = None) -> T:
    """`work()`, which SIGINT/SIGTERM interrupt at once even inside a long native call: on the
    main thread it runs on a worker thread while this one waits (signal handlers run here); on
    an interrupt `stop` asks the work to end (else it is abandoned to a thread that dies with
    the process) and the KeyboardInterrupt goes on. On other threads `work` runs directly."""
    global _worker
    if threading.current_thread() is not threading.main_thread():
        return work()
    _worker = _worker or _Worker()
    box: list[tuple[bool, Any]] = []
    done = threading.Lock()
    done.acquire()
    _worker.jobs.put((work, box, done))
    try:
        done.acquire()
    except KeyboardInterrupt:
        _worker = None  # busy with the abandoned call: the next call gets a new thread
        if stop is not None:
            stop()
        raise
    succeeded, value = box[0]
    if not succeeded:
        raise value
    return value
