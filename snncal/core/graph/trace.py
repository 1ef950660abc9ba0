"""Tracing a model into a torch.fx graph, with errors that point at the user's source line."""

from __future__ import annotations

import os
import re
import traceback

import torch
from torch import fx, nn

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_FRAME = re.compile(r'File "([^"]+)", line (\d+), in [^\n]*\n\s*([^\n]*)')


class ConversionError(ValueError):
    """A model, or one of its ops, that snncal cannot turn into a spiking network."""


def _is_user_file(filename: str) -> bool:
    return not filename.startswith(_TORCH_DIR) and "<" not in filename


def user_frame_from_text(stack_trace: str | None) -> str:
    """``file:line `code``` of the innermost frame in a recorded stack that is the user's code."""
    frames = [m.groups() for m in _FRAME.finditer(stack_trace or "")]
    frames = [f for f in frames if _is_user_file(f[0])]
    if not frames:
        return "<unknown source>"
    filename, line, code = frames[-1]
    return f"{filename}:{line} `{code.strip()}`"


def node_location(node: fx.Node) -> str:
    """Where in the user's source a graph node was created."""
    return user_frame_from_text(node.stack_trace)


def trace(model: nn.Module) -> fx.GraphModule:
    """Symbolically trace ``model``, recording stack traces so later errors can name source lines.

    Raises:
        ConversionError: the model has data-dependent control flow or is otherwise untraceable.
    """
    tracer = fx.Tracer()
    tracer.record_stack_traces = True
    try:
        graph = tracer.trace(model)
    except Exception as err:  # fx raises TraceError, TypeError, AttributeError, ...
        frames = [
            f for f in traceback.extract_tb(err.__traceback__) if _is_user_file(f.filename)
        ]
        where = f"{frames[-1].filename}:{frames[-1].lineno} `{frames[-1].line}`" if frames else ""
        raise ConversionError(
            f"cannot trace {type(model).__name__} with torch.fx at {where or '<unknown source>'}: "
            f"{err}. Conversion needs a static graph: move data-dependent control flow (an `if` or "
            "loop on tensor values) out of forward(), or mark that submodule as a leaf."
        ) from err
    name = type(model).__name__
    return fx.GraphModule(tracer.root, graph, name)
