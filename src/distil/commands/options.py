"""Command-line options made from a settings model: one `--option` per field, its help the
field's docstring, its default the field's default. An option is written once, in the model.

    @app.command()
    @options_from(TextAudit)
    def text(files: FilesArgument, **options: Any) -> None:
        settings = settings_from(TextAudit, options, AuditError, files=files)

A field the command declares itself (an argument, an option with a default of its own) is
left to it. `settings_from` validates the values into the model; a value it refuses is one
line naming the option (`--alpha: Input should be less than 1 (got 2.0)`).
"""

import functools
import inspect
import types
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import typer
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from distil.errors import DistilError

Command = TypeVar("Command", bound=Callable[..., None])
Model = TypeVar("Model", bound=BaseModel)

_PLAIN = (str, int, float, bool, Path)
"""Field types an option carries as they are (others: see _option_type)."""


def options_from(*models: type[BaseModel]) -> Callable[[Command], Command]:
    """Give the decorated command (which takes `**options`) one keyword option per field of
    `models`, except fields it declares itself; it receives them all in `options`."""

    def decorate(command: Command) -> Command:
        own = [
            p
            for p in inspect.signature(command).parameters.values()
            if p.kind is not inspect.Parameter.VAR_KEYWORD
        ]
        taken = {p.name for p in own}
        fields = {
            name: info for model in models for name, info in model.model_fields.items() if name not in taken
        }
        generated = [_option(name, info) for name, info in fields.items()]

        @functools.wraps(command)
        def with_options(**values: Any) -> None:
            return command(**values)

        del with_options.__wrapped__  # typer reads the signature below, not the command's
        with_options.__signature__ = inspect.Signature([*own, *generated])  # type: ignore[attr-defined]
        with_options.__annotations__ = {p.name: p.annotation for p in [*own, *generated]}
        return with_options  # type: ignore[return-value]

    return decorate


def settings_from(
    model: type[Model], options: dict[str, Any], error: type[DistilError], /, **values: Any
) -> Model:
    """`model` from the options that are its fields and `values` (arguments and the like); a
    value it refuses raises `error`, one line naming the option."""
    given = {name: value for name, value in options.items() if name in model.model_fields}
    try:
        return model(**given, **values)
    except ValidationError as err:
        first = err.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else ""
        where = (name.upper() if name in values else option_name(name)) if name else "a setting"
        message = first["msg"].removeprefix("Value error, ")
        raise error(f"{where}: {message} (got {first.get('input')!r})") from None


def option_name(field: str) -> str:
    """`--max-tokens` for the field max_tokens."""
    return "--" + field.replace("_", "-")


def field_help(info: FieldInfo) -> str:
    """A field's docstring on one line."""
    return " ".join((info.description or "").split())


def _option(name: str, info: FieldInfo) -> inspect.Parameter:
    required = info.is_required()
    default = inspect.Parameter.empty if required else info.get_default(call_default_factory=True)
    kind = _option_type(name, info.annotation)
    flag = option_name(name)
    if kind is bool and default is not False:
        flag = f"{flag}/--no-{flag[2:]}"
    shown = not required and default not in (None, [])
    option = typer.Option(flag, help=field_help(info), show_default=shown)
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option]
    )


def _option_type(name: str, annotation: Any) -> Any:
    """The type typer parses an option as; the model checks the value. A choice of words
    (Literal) is read as a word, so that a wrong one is refused by the model in one line."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _option_type(name, args[0])
    if origin is Literal:
        return str
    if origin in (Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return _option_type(name, rest[0]) | None
    if origin is list and len(args) == 1 and args[0] in _PLAIN:
        return list[args[0]]
    if annotation in _PLAIN:
        return annotation
    raise TypeError(f"field {name} ({annotation}) cannot be a command-line option")
