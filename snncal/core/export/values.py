"""Constants of a converted graph as JSON values: node arguments and module configurations.

JSON values stay themselves; the few Python values JSON lacks are tagged::

    {"node": "x"}            a reference to an earlier node
    {"tuple": [1, 2]}        a tuple (a JSON list stays a list)
    {"slice": [0, null, 2]}  slice(0, None, 2)
    {"float": "inf"}         inf, -inf, nan
    {"ellipsis": null}       ...
    {"dtype": "float32"}     torch.float32
    {"dict": [["k", 1]]}     a dict

Reading a value checks every tag and raises :class:`~snncal.core.files.FileFormatError` for the
first problem.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import fx

from snncal.core.files import FileFormatError

__all__ = [
    "short_repr",
    "value_from_json",
    "value_to_json",
]

_TAGS = ("node", "tuple", "slice", "float", "ellipsis", "dtype", "dict")


def value_to_json(value: Any, where: str) -> Any:
    """The JSON form of an argument or configuration value (see the module docstring)."""
    if isinstance(value, fx.Node):
        return {"node": value.name}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, tuple):
        return {"tuple": [value_to_json(v, where) for v in value]}
    if isinstance(value, list):
        return [value_to_json(v, where) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"dict": [[k, value_to_json(v, where)] for k, v in value.items()]}
    if isinstance(value, slice):
        return {"slice": [value_to_json(v, where) for v in (value.start, value.stop, value.step)]}
    if value is Ellipsis:
        return {"ellipsis": None}
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).removeprefix("torch.")}
    raise ValueError(f"{where}: cannot save the constant {value!r} ({type(value).__name__}) as data")


def value_from_json(data: Any, nodes: dict[str, fx.Node], where: str) -> Any:
    """The value :func:`value_to_json` wrote; ``nodes`` maps names to the nodes defined so far."""
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [value_from_json(v, nodes, where) for v in data]
    if not isinstance(data, dict) or len(data) != 1 or next(iter(data)) not in _TAGS:
        raise FileFormatError(f"{where}: unknown constant {short_repr(data)}")
    tag, body = next(iter(data.items()))
    return _DECODERS[tag](body, nodes, where)


def _node_ref(body: Any, nodes: dict[str, fx.Node], where: str) -> fx.Node:
    if not isinstance(body, str) or body not in nodes:
        raise FileFormatError(f"{where}: refers to node {short_repr(body)}, which is not defined before it")
    return nodes[body]


def _sequence(body: Any, nodes: dict[str, fx.Node], where: str, length: int | None = None) -> list:
    if not isinstance(body, list) or (length is not None and len(body) != length):
        raise FileFormatError(f"{where}: malformed constant {short_repr(body)}")
    return [value_from_json(v, nodes, where) for v in body]


def _float(body: Any, nodes: dict[str, fx.Node], where: str) -> float:
    if body not in ("inf", "-inf", "nan"):
        raise FileFormatError(f"{where}: unknown float {short_repr(body)}")
    return float(body)


def _ellipsis(body: Any, nodes: dict[str, fx.Node], where: str) -> Any:
    return Ellipsis


def _dtype(body: Any, nodes: dict[str, fx.Node], where: str) -> torch.dtype:
    dtype = getattr(torch, body, None) if isinstance(body, str) and body.isidentifier() else None
    if not isinstance(dtype, torch.dtype):
        raise FileFormatError(f"{where}: unknown dtype {short_repr(body)}")
    return dtype


def _dict(body: Any, nodes: dict[str, fx.Node], where: str) -> dict:
    if not isinstance(body, list) or not all(
        isinstance(kv, list) and len(kv) == 2 and isinstance(kv[0], str) for kv in body
    ):
        raise FileFormatError(f"{where}: malformed dict constant {short_repr(body)}")
    return {k: value_from_json(v, nodes, where) for k, v in body}


_DECODERS = {
    "node": _node_ref,
    "tuple": lambda body, nodes, where: tuple(_sequence(body, nodes, where)),
    "slice": lambda body, nodes, where: slice(*_sequence(body, nodes, where, 3)),
    "float": _float,
    "ellipsis": _ellipsis,
    "dtype": _dtype,
    "dict": _dict,
}


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters, for error messages about a file's contents."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
