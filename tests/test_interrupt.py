"""Sticky interruption: signals during the work raise, later ones are ignored, and an interrupt
Python cannot raise (in a weakref callback) is recorded without a traceback."""

import os
import signal
import subprocess
import sys
import weakref
from collections.abc import Callable

import pytest

from speedy import interrupt


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch, own_signals: None) -> list[type[BaseException]]:
    """`interrupt.install()` over a recording unraisable hook: the exception types it saw."""
    seen: list[type[BaseException]] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda report: seen.append(report.exc_type))
    interrupt.install()
    return seen


def in_weakref_callback(act: Callable[[], object]) -> None:
    """Run `act` where Python cannot raise: as a weakref callback."""

    class Target:
        pass

    def callback(_: object) -> None:
        act()
        for _ in range(1000):  # a loop: pending signal handlers run here, inside the callback
            pass

    target = Target()
    ref = weakref.ref(target, callback)
    del target
    assert ref() is None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_the_work_raises_and_sticks(installed: list, sig: signal.Signals) -> None:
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), sig)
    with pytest.raises(KeyboardInterrupt):
        interrupt.check()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_after_the_work_is_ignored(installed: list, sig: signal.Signals) -> None:
    interrupt.settle()
    os.kill(os.getpid(), sig)  # before settle(): KeyboardInterrupt; by default: death
    assert not interrupt.requested()


def test_an_interrupted_run_ends_by_its_signal() -> None:
    script = """
import os, signal
from speedy import interrupt
interrupt.install()
try:
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(1000):
        pass
except KeyboardInterrupt:
    print("cleaned up", flush=True)
interrupt.settle()
interrupt.exit_by_signal()
print("not reached")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == -signal.SIGTERM, result.stderr
    assert result.stdout == "cleaned up\n"


def test_a_new_run_starts_clean(installed: list) -> None:
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
    assert interrupt.requested()
    interrupt.install()
    assert not interrupt.requested()
    interrupt.exit_by_signal()  # no signal in this run: it returns


def fail() -> None:
    raise ValueError("not an interrupt")


def test_unraisable_interrupt_is_recorded_quietly(installed: list) -> None:
    in_weakref_callback(lambda: os.kill(os.getpid(), signal.SIGINT))
    assert installed == []
    with pytest.raises(KeyboardInterrupt):
        interrupt.check()
    in_weakref_callback(fail)
    assert installed == [ValueError]  # other unraisable errors still reach the previous hook


def test_install_keeps_one_quiet_hook(installed: list) -> None:
    hook: Callable = sys.unraisablehook
    interrupt.install()
    assert sys.unraisablehook is hook
    in_weakref_callback(fail)
    assert installed == [ValueError]
