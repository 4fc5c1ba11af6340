"""Progress for the long quantization steps (calibration, sensitivity, search) and quiet ORT."""

import contextlib
import io
import logging
from collections.abc import Callable, Iterator

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from speedy.console import console


@contextlib.contextmanager
def steps(description: str, total: int | None) -> Iterator[Callable[[str], None]]:
    """A progress bar of `total` steps (None: unknown) on a terminal; yields `advance(note)`,
    called after each step."""
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    live = console.is_terminal
    with Progress(*columns, console=console, transient=True, disable=not live) as progress:
        task = progress.add_task(description, total=total)

        def advance(note: str = "") -> None:
            label = f"{description}: {note}" if note else description
            progress.update(task, advance=1, description=label)

        yield advance


@contextlib.contextmanager
def quiet_ort() -> Iterator[None]:
    """Silence onnxruntime.quantization's prints and its root-logger advice while it runs."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(previous)
