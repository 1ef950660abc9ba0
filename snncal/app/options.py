"""Command-line options from dataclass fields: one option per field, its help from the field's
``metadata["help"]``, its default from the dataclass (options left unset keep it)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from typing import Any, TypeVar

__all__ = [
    "add_options",
    "from_args",
    "positive_int",
]

C = TypeVar("C")
_TYPES = {"int": int, "float": float, "str": str}


def _flag(name: str) -> str:
    return "--T" if name == "T" else "--" + name.replace("_", "-")


def add_options(parser: argparse.ArgumentParser, cls: type, title: str, skip: Sequence[str] = ()) -> None:
    """Add one option per field of the dataclass ``cls`` to a group ``title`` of ``parser``.

    A ``tuple[X, ...]`` field takes one or more values; a field's ``metadata`` may name its
    ``choices``, its argparse ``type`` and, where the flag is not the field's name, its ``flag``."""
    group = parser.add_argument_group(title)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        text = f"{f.metadata.get('help', '')} (default: {_shown(f.default)})".replace("%", "%%")
        kind = str(f.type).split(" |")[0]
        flag = f.metadata.get("flag", _flag(f.name))
        if kind == "bool":
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                               default=None, help=text)
            continue
        many = kind.startswith("tuple[")
        item = kind[len("tuple[") :].split(",")[0] if many else kind
        extra: dict[str, Any] = {"nargs": "+"} if many else {}
        if "choices" in f.metadata:
            extra["choices"] = f.metadata["choices"]
        kind_of = f.metadata.get("type", _TYPES.get(item, str))
        group.add_argument(flag, dest=f.name, type=kind_of, default=None,
                           metavar=f.name.upper(), help=text, **extra)


def _shown(default: Any) -> Any:
    return " ".join(map(str, default)) if isinstance(default, tuple) else default


def from_args(cls: type[C], args: argparse.Namespace, skip: Sequence[str] = (), **fixed: Any) -> C:
    """The ``cls`` of the parsed options (unset ones keep their defaults) and ``fixed`` values.

    A field's check (``__post_init__``) raises its ValueError here, before any work starts.
    """
    given = {
        f.name: _value(f, getattr(args, f.name))
        for f in dataclasses.fields(cls)
        if f.name not in skip and getattr(args, f.name, None) is not None
    }
    return cls(**{**given, **fixed})


def _value(f: dataclasses.Field, value: Any) -> Any:
    return tuple(value) if str(f.type).startswith("tuple[") else value


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
