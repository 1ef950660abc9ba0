"""Tracing a model into a torch.fx graph and running it on an example, with errors that point at
the user's source line."""

from __future__ import annotations

import os
import re
import traceback
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import _extract_tensor_metadata

__all__ = [
    "ConversionError",
    "describe",
    "first_line",
    "known_value",
    "node_location",
    "op_name",
    "propagate",
    "trace",
    "user_frame_from_text",
]

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
    """Where in the user's source a graph node was created; for a node that no user code created
    (a layer of an ``nn.Sequential``), the submodule it belongs to."""
    where = user_frame_from_text(node.stack_trace)
    stack = node.meta.get("nn_module_stack")
    if where == "<unknown source>" and stack:
        path, cls = list(stack.values())[-1]
        where = f"submodule '{path}' ({getattr(cls, '__name__', cls)})"
    return where


def op_name(gm: fx.GraphModule, node: fx.Node) -> str:
    """What a node calls, in words: ``module Linear``, ``method .view()``, ``function avg_pool2d``."""
    if node.op == "call_module":
        return f"module {type(gm.get_submodule(node.target)).__name__}"
    if node.op == "call_method":
        return f"method .{node.target}()"
    if node.op == "call_function":
        return f"function {getattr(node.target, '__name__', node.target)}"
    return {"placeholder": "input", "get_attr": "attribute"}.get(node.op, node.op)


def describe(gm: fx.GraphModule, node: fx.Node) -> str:
    """``node 'fc' (module Linear) at file:line `code```: a node as error messages name it."""
    return f"node '{node.name}' ({op_name(gm, node)}) at {node_location(node)}"


def first_line(err: BaseException) -> str:
    """``TypeError: first line of the message``: an exception in one line."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


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


class _NodeError(Exception):
    def __init__(self, node: fx.Node, err: Exception) -> None:
        super().__init__(node.name)
        self.node, self.err = node, err


class _Propagate(fx.Interpreter):
    """ShapeProp that also keeps each node's non-tensor value (a size, a shape) in ``meta["value"]``
    and stops at the first failing node without printing a traceback."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.extra_traceback = False  # the error names the node and its line itself

    def run_node(self, n: fx.Node) -> Any:
        try:
            result = super().run_node(n)
        except Exception as err:
            raise _NodeError(n, err) from err
        found = []

        def tensor_meta(obj: Any) -> Any:
            if isinstance(obj, torch.Tensor):
                found.append(obj)
                return _extract_tensor_metadata(obj)
            return obj

        meta = fx.node.map_aggregate(result, tensor_meta)
        n.meta.pop("value", None)
        n.meta.pop("tensor_meta", None)
        if found:
            n.meta["tensor_meta"] = meta
        else:
            n.meta["value"] = result
        n.meta["type"] = type(result)
        return result


def propagate(gm: fx.GraphModule, example: torch.Tensor) -> None:
    """Run ``gm`` on ``example``, recording shapes (``meta["tensor_meta"]``, as ShapeProp) and the
    values of shape arithmetic such as ``x.size()[3]`` (``meta["value"]``).

    Raises:
        ConversionError: the model fails on ``example``, which usually means an input of a shape
            it was not built for.
    """
    try:
        with torch.no_grad():
            _Propagate(gm).run(example)
    except _NodeError as failed:
        shape = tuple(getattr(example, "shape", ()))
        raise ConversionError(
            f"the model fails on an input of shape {shape} at {describe(gm, failed.node)}: "
            f"{first_line(failed.err)}. Pass inputs of the shape the model was trained on "
            "(calibration data and examples are batches [N, ...] of inputs like the training "
            "images, e.g. [N, 3, 32, 32] for a CIFAR model)."
        ) from failed.err


def known_value(value: Any) -> Any:
    """``value`` with each Node replaced by the plain value (a size, a shape) it computed when the
    graph last ran on the example (:func:`propagate`); Nodes without one (tensors) stay."""
    return fx.node.map_arg(value, lambda n: n.meta.get("value", n))
