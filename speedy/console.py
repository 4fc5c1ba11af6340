"""One place for user-facing output: notices and progress go to stderr, results to stdout."""

import os
import sys

from rich.console import Console
from rich.markup import escape

# Tables and help in a pipe or a CI log, where no terminal gives a width (rich would take 80).
PIPE_WIDTH = 140
UNSIZED = not sys.stdout.isatty() and not os.environ.get("COLUMNS")

console = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, width=PIPE_WIDTH if UNSIZED else None)


def printable(text: str) -> str:
    """`text` with control characters (terminal escape sequences in a file name) spelled out."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def shown(text: object) -> str:
    """Markup that prints `text` (a path, a name from a file) as it is: control characters
    spelled out, rich's `[...]` tags literal."""
    return escape(printable(str(text)))


def notice(message: str) -> None:
    """Tell the user about something speedy did on their behalf (resampled, fell back, cached)."""
    console.print(f"[yellow]notice:[/] {shown(message)}")
