"""Sticky interruption: once SIGINT/SIGTERM arrives, no artifact is published, even if a library
swallowed the KeyboardInterrupt raised for it."""

import signal

_requested = False


def _handler(signum: int, frame: object) -> None:
    global _requested
    _requested = True
    raise KeyboardInterrupt


def install() -> None:
    """Route SIGINT and SIGTERM through the sticky handler."""
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


def check() -> None:
    """Raise KeyboardInterrupt if an interruption was requested at any point."""
    if _requested:
        raise KeyboardInterrupt
