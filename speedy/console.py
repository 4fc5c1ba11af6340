"""One place for user-facing output: notices and progress go to stderr, results to stdout."""

from rich.console import Console

console = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False)


def notice(message: str) -> None:
    """Tell the user about something speedy did on their behalf (resampled, fell back, cached)."""
    console.print(f"[yellow]notice:[/] {message}")
