"""The `speedy` command line: one module per group of commands, each resolving its options into
stage configs and calling them; heavy modules (torch, the families, a backend's runtime) are
imported inside the commands that need them, so `speedy --help` and `speedy inspect` start fast.
"""

import sys

from rich.markup import escape
from typer.exceptions import TyperException

from speedy import interrupt
from speedy.cli import bench, build, deploy, optimize, show, speak  # noqa: F401 (they add the commands)
from speedy.cli.app import app
from speedy.console import console, printable, shown
from speedy.errors import SpeedyError

__all__ = ["app", "error_line", "main"]

INTERRUPTED = 130


def error_line(exc: Exception) -> str:
    """The one line a failure gets: a SpeedyError's own message (problem and fix), or the
    exception's type and first line with how to learn more."""
    if isinstance(exc, SpeedyError):
        return f"[red]error:[/] {shown(exc)}"  # [extra] stays
    first = printable(next(iter(str(exc).splitlines()), ""))
    if isinstance(exc, MemoryError):
        return (
            f"[red]error:[/] out of memory ({escape(first)}) "
            "(fix: use smaller sizes: dims, batch, network, or free memory)"
        )
    if isinstance(exc, OSError) and exc.filename:
        return (
            f"[red]error:[/] cannot use {shown(exc.filename)}: "
            f"{escape(str(exc.strerror))} "
            "(fix: check its permissions and the free disk space)"
        )
    return (
        f"[red]error:[/] unexpected {type(exc).__name__}: {escape(first)} "
        "(fix: rerun with --debug for the traceback, and report it)"
    )


def main() -> None:
    """Entry point: one-line errors and a non-zero exit; tracebacks only with --debug."""
    debug = "--debug" in sys.argv
    sys.argv = [arg for arg in sys.argv if arg != "--debug"]
    interrupt.install()
    try:
        try:
            code = app(standalone_mode=False)  # returns an exit code for --help and interrupts
        finally:
            interrupt.settle()
    except KeyboardInterrupt:
        code = INTERRUPTED
    except TyperException as exc:  # usage errors: bad option, missing argument
        exc.show()
        sys.exit(exc.exit_code)
    except Exception as exc:
        if debug:
            raise
        if not interrupt.requested():
            console.print(error_line(exc), soft_wrap=True)
            sys.exit(1)
        code = INTERRUPTED  # a library reported the interrupt as a failure of its own
    if code == INTERRUPTED:
        console.print("[red]interrupted:[/] no partial output was kept", soft_wrap=True)
        interrupt.exit_by_signal()
    sys.exit(code if isinstance(code, int) else 0)
