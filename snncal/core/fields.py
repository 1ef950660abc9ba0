"""A dataclass field with its help text: how every config dataclass of snncal declares a knob.

The help is ``metadata["help"]``, which :mod:`snncal.app.options` turns into command-line help.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

__all__ = ["help_field"]


def help_field(default: Any, help: str, **metadata: Any) -> Any:
    """A field with default ``default`` and help text ``help`` (the command line's option help);
    ``metadata`` adds what else the command line reads (``flag``, ``type``, ``choices``)."""
    return field(default=default, metadata={"help": help, **metadata})
