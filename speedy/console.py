"""One place for user-facing output: notices and progress go to stderr, results to stdout."""

import os
import sys

from rich.console import Console

# Tables and help in a pipe or a CI log, where no terminal gives a width (rich would take 80).
PIPE_WIDTH = 140
UNSIZED = not sys.stdout.isatty() and not os.environ.get("COLUMNS")

console = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, width=PIPE_WIDTH if UNSIZED else None)


def notice(message: str) -> None:
    """Tell the user about something speedy did on their behalf (resampled, fell back, cached)."""
    console.print(f"[yellow]notice:[/] {message}")
