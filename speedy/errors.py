"""User-facing errors: what went wrong and how to fix it, printed as one line by the CLI."""

import importlib
from types import ModuleType

from pydantic import ValidationError


class SpeedyError(Exception):
    """An error caused by the user's input, with the fix to try."""

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.problem} (fix: {self.fix})" if self.fix else self.problem


class GraphRunError(SpeedyError):
    """A backend failed to run a graph on inputs that passed the feed checks."""


class OutOfRange(SpeedyError):
    """An input is longer (or shorter) than the model was built to take."""


class ParityError(SpeedyError):
    """An artifact's outputs differ from its parent's beyond the tolerance."""


def first_invalid(exc: ValidationError, whole: str = "") -> str:
    """'where: what' of a validation error's first complaint (`whole`: where, when it is about
    the whole object)."""
    first = exc.errors()[0]
    message = first["msg"].removeprefix("Value error, ")  # our validators' own words
    return f"{'.'.join(map(str, first['loc'])) or whole}: {message}"


def import_extra(module: str, extra: str, name: str | None = None) -> ModuleType:
    """`module`, or a clear error naming the extra of speedy's that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SpeedyError(
            f"{name or module} is not installed", f"pip install 'openspeedy[{extra}]'"
        ) from None
