"""Command-line parameters: the ones several commands share, and flags derived from the typed
options of a stage or backend (each field with a description is a flag; its description is the
help), so that an option is declared once, where it is validated."""

import inspect
from collections.abc import Callable
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import typer
from pydantic import BaseModel, ValidationError
from rich.markup import escape

from speedy.errors import SpeedyError, first_invalid
from speedy.stages.options import flag_of, option_default, option_extra

M = TypeVar("M", bound=BaseModel)

Force = Annotated[
    bool, typer.Option("--force", help="Replace an existing output that speedy wrote.")
]
ForceFile = Annotated[
    bool,
    typer.Option("--force-file", help="Replace an existing output file, whoever wrote it."),
]
Threads = Annotated[int, typer.Option(help="CPU threads for checks and timing.")]
Data = Annotated[
    Path | None, typer.Option(help="Examples for parity checks (default: the recipe's).")
]
SkipParity = Annotated[
    bool, typer.Option("--skip-parity", help="Keep the artifact without checking it (not advised).")
]
Graphs = Annotated[
    list[str] | None,
    typer.Option("--graph", help="Graph to act on (repeatable; default: every graph)."),
]
NoVerify = Annotated[
    bool,
    typer.Option("--no-verify", help="Load artifacts without checking their files' digests."),
]
Trust = Annotated[
    bool,
    typer.Option(
        "--trust",
        help="Load artifacts whose files run native code when loaded (AOTInductor .pt2): only "
        "ones you built or trust.",
    ),
]
Output = Annotated[Path, typer.Option("-o", "--output", help="Artifact directory to write.")]


def flags(*models: type[BaseModel], exclude: frozenset[str] = frozenset()) -> list[str]:
    """The names of the options of `models` that are flags (a name shared by two models, such as
    a setting two backends take, is one flag)."""
    return list(
        dict.fromkeys(
            name
            for model in models
            for name, field in model.model_fields.items()
            if field.description and name not in exclude
        )
    )


def _typer_type(annotation: Any) -> Any:
    """`annotation` as typer takes it: constraints dropped and a list of choices as a list of
    strings (the model checks both)."""
    if get_origin(annotation) is Annotated:  # constraints (PositiveInt): the model checks them
        return _typer_type(get_args(annotation)[0])
    if get_origin(annotation) is list:
        item = _typer_type(get_args(annotation)[0])
        return list[str] if get_origin(item) is Literal else list[item]
    if get_origin(annotation) in (Union, UnionType):
        return Union[tuple(_typer_type(a) for a in get_args(annotation))]  # noqa: UP007
    return annotation


def _parameter(name: str, model: type[BaseModel]) -> inspect.Parameter:
    field, flag = model.model_fields[name], flag_of(name, model)
    default = option_default(name, model)
    if field.annotation is bool:
        declaration = flag if default is False else f"{flag}/--no-{flag.removeprefix('--')}"
        option = typer.Option(declaration, help=field.description)
        annotation: Any = Annotated[bool, option]
    else:  # unset: None, so the model's own default applies
        shown = escape(f" [default: {default}]") if default not in (None, []) else ""
        envvar = option_extra(name, model).get("envvar")
        option = typer.Option(
            flag,
            help=f"{field.description}{shown}",
            show_default=False,
            envvar=envvar,
            show_envvar=envvar is not None,
        )
        annotation = Annotated[_typer_type(field.annotation) | None, option]
        default = None
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


def with_flags(
    *models: type[BaseModel], exclude: frozenset[str] = frozenset()
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command, besides its own parameters, a flag per option of `models`; it receives
    them as keyword arguments, None where not given (see `given`)."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        own = [
            p
            for p in inspect.signature(command).parameters.values()
            if p.kind is not inspect.Parameter.VAR_KEYWORD
        ]
        owner = {name: m for m in reversed(models) for name in m.model_fields}
        derived = [_parameter(name, owner[name]) for name in flags(*models, exclude=exclude)]
        command.__signature__ = inspect.Signature(own + derived)  # type: ignore[attr-defined]
        return command

    return decorate


def validated(model: type[M], settings: dict[str, Any], command: str) -> M:
    """`settings` as `model`, or an error naming the option at fault."""
    try:
        return model.model_validate(settings)
    except ValidationError as exc:
        raise SpeedyError(f"{command} options: {first_invalid(exc)}", "fix that option") from exc


def given(values: dict[str, Any]) -> dict[str, Any]:
    """The derived options a user gave (a flag left unset is None; the model's default applies)."""
    return {name: value for name, value in values.items() if value is not None}
