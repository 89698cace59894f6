"""Dataclass fields -> command-line flags and typed values: one helper for every command.

A config is a dataclass whose fields are made with :func:`opt` (default, help text, choices).
:func:`add_arguments` gives each field a flag ``--field-name`` (and ``--field_name``, the
reference code's spelling), its type, choices and help with the default shown; ``None`` as a
default means "auto" (resolved from other fields, and written resolved into ``config.json``).
A field made with ``opt(..., preset=True)`` defaults to None too: a preset (a built-in data
set's tested settings) may set it, else it takes its plain default (:func:`plain_default`);
``--help`` shows the plain default and, through the class's ``help_notes()``, the presets.
:func:`given` returns what the user set, so a command can tell it from a default, and
:func:`coerce` types string values (a YAML file's ``args``, an environment variable).

A leaf module: it imports nothing of the project.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["opt", "redefault", "plain_default", "flag_names", "add_arguments", "given", "coerce", "field_type",
           "defaults"]

_PLAIN = "plain"  # metadata key: the default of a field a preset may set


def opt(default, help: str, choices: tuple | None = None, preset: bool = False, **kw):
    """A dataclass field with the help text (and choices) the CLI shows. ``None``: "auto".

    ``preset=True``: the field's default is None, so a preset can tell it was left unset;
    ``default`` is its plain value, taken when no preset sets it (the config resolves it)."""
    meta = {"help": help, "choices": choices}
    if preset:
        meta[_PLAIN] = default
        default = None
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


def redefault(cls: type[DataclassInstance], name: str, default: Any):
    """A subclass's copy of ``cls``'s option ``name`` (same help text and choices, a preset may still set it
    if it could) with another default."""
    f = cls.__dataclass_fields__[name]
    return opt(default, f.metadata["help"], f.metadata["choices"], preset=_PLAIN in f.metadata)


def plain_default(f: dataclasses.Field) -> tuple[bool, Any]:
    """(True, value) for a field made with ``opt(value, ..., preset=True)``; (False, None) for others."""
    return (True, f.metadata[_PLAIN]) if _PLAIN in f.metadata else (False, None)


def flag_names(name: str) -> list[str]:
    """``--load-size``, and ``--load_size`` as the reference spells it."""
    dashed = "--" + name.replace("_", "-")
    return [dashed] if "_" not in name else [dashed, "--" + name]


def field_type(cls: type, name: str) -> type:
    """The value type of a field: ``int`` for ``int``, ``int | None`` and ``Optional[int]``."""
    tp = typing.get_type_hints(cls)[name]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else str
    return tp if tp in (bool, int, float, str) else str


def defaults(cls: type) -> dict[str, Any]:
    return {f.name: _default(f) for f in dataclasses.fields(cls)}


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is dataclasses.MISSING:
        raise TypeError(f"option {f.name} has no default")
    return f.default_factory()


def add_arguments(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (),
                  only: tuple[str, ...] | None = None) -> None:
    """One flag per dataclass field (``skip`` some, or ``only`` some). Flag defaults are None, so
    :func:`given` tells what the user set from the dataclass default. A class method ``help_notes()``
    returning ``{field: text}`` adds the text after a field's default (the presets that set it)."""
    values = defaults(cls)
    notes = cls.help_notes() if hasattr(cls, "help_notes") else {}
    for f in dataclasses.fields(cls):
        if f.name in skip or (only is not None and f.name not in only) or not f.init:
            continue
        tp, default = field_type(cls, f.name), values[f.name]
        has_plain, plain = plain_default(f)
        shown = plain if has_plain else "auto" if default is None else default
        help_ = f"{f.metadata.get('help', '')} (default: {shown}{'; ' + notes[f.name] if f.name in notes else ''})"
        help_ = help_.replace("%", "%%")  # argparse formats help with %: a "95 %" in a text must stay a "95 %"
        if tp is bool:
            parser.add_argument(flag_names(f.name)[0], dest=f.name, action=argparse.BooleanOptionalAction,
                                default=None, help=help_)
        else:
            parser.add_argument(*flag_names(f.name), dest=f.name, type=tp, default=None,
                                choices=f.metadata.get("choices"), help=help_)


def given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The dataclass fields the user set on the command line."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def coerce(cls: type, values: dict[str, Any], error: type[Exception] = ValueError) -> dict[str, Any]:
    """``values`` typed as ``cls``'s fields (strings parsed); unknown names or bad values raise
    ``error(name, message)`` (a ConfigError) or ValueError."""
    names = {f.name for f in dataclasses.fields(cls)}
    out = {}
    for k, v in values.items():
        if k not in names:
            raise _err(error, k, f"unknown option (expected one of {', '.join(sorted(names))})")
        tp = field_type(cls, k)
        if v is None or (isinstance(v, str) and v.lower() in ("", "auto", "none") and tp is not str):
            out[k] = None if defaults(cls)[k] is None else defaults(cls)[k]
            continue
        try:
            if tp is bool and isinstance(v, str):
                if v.lower() not in _TRUE + _FALSE:
                    raise ValueError(v)
                v = v.lower() in _TRUE
            elif tp is int and isinstance(v, float) and not v.is_integer():
                raise ValueError(v)
            out[k] = tp(v)
        except (TypeError, ValueError):
            raise _err(error, k, f"{v!r} is not a valid {tp.__name__}") from None
        choices = next(f for f in dataclasses.fields(cls) if f.name == k).metadata.get("choices")
        if choices and out[k] not in choices:
            raise _err(error, k, f"must be one of {', '.join(map(str, choices))}, got {out[k]!r}")
    return out


def _err(error: type[Exception], name: str, message: str) -> Exception:
    try:
        return error(name, message)
    except TypeError:
        return error(f"{name}: {message}")
