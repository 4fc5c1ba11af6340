"""The Typer application each command module adds its commands to."""

import typer
import typer.rich_utils

from speedy.console import PIPE_WIDTH, UNSIZED

if typer.rich_utils.MAX_WIDTH is None and UNSIZED:
    typer.rich_utils.MAX_WIDTH = PIPE_WIDTH

app = typer.Typer(
    help="Convert, optimize and check speech-generation models. Add --debug for tracebacks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
