"""The op vocabulary: every op a converted graph may hold, in one table that every pass reads.

Conversion accepts an op (:func:`~snncal.core.graph.checks.check_supported`), an SNN file names it
(:mod:`~snncal.core.export.graph_data`), the cost model counts it (:mod:`~snncal.core.stats`) and
NIR export writes it (:mod:`~snncal.core.export.nir`) because it has a row here. Adding an op is
adding a row; ``tests/test_ops.py`` converts, saves, loads, costs and exports every row.

A row says what the op *does* (its ``role``), not how each reader handles it:

    role           ops                                          linear in the input
    add, sub       x + y, torch.add, .add_                      yes
    mul, div       x * c, x / c, torch.mul, .div                only by a constant
    neg            -x                                           yes
    conv, linear   nn.Conv2d, F.conv2d, nn.Linear, F.linear     yes
    batchnorm      nn.BatchNorm2d (eval statistics)             yes
    avg_pool       nn.AvgPool2d, F.avg_pool2d                   yes
    adaptive_pool  nn.AdaptiveAvgPool2d, ...                    yes
    mean           torch.mean, .mean                            yes
    pad            nn.ZeroPad2d, F.pad                          yes
    cat            torch.cat (along channels)                   yes
    getitem        x[:, :4], a tuple's item                     yes
    reshape        view, flatten, squeeze, nn.Flatten, ...      yes
    rearrange      transpose, permute                           yes
    split          chunk, split (a tuple of tensors)            yes
    identity       contiguous, float, clone, nn.Identity        yes
    size           .size(), .dim(), getattr(x, "shape")         reads sizes only
    size_math      //, %, ** on sizes                           sizes only, never on tensors
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

__all__ = [
    "FUNCTIONS",
    "METHODS",
    "MODULES",
    "OPS",
    "Op",
    "argument",
    "lookup",
    "node_arg",
    "targets",
]


@dataclass(frozen=True)
class Op:
    """One op a converted graph may hold.

    Attributes:
        kind: ``"function"``, ``"method"`` or ``"module"`` (the fx node's ``call_*``).
        target: the function, the method's name or the module type.
        name: its stable name in SNN files (``"operator.add"``, ``"view"``, ``"Conv2d"``).
        role: what it does (the table in the module docstring).
        nir: whether NIR export writes it (else it refuses the network with one clear line).
        dims: the spatial dimensions of a pool (1, 2 or 3).
        fields: a module's constructor arguments, which rebuild it from a file.
    """

    kind: str
    target: Any
    name: str
    role: str
    nir: bool = True
    dims: int = 0
    fields: tuple[str, ...] = ()


def _fn(target: Any, name: str, role: str, nir: bool = True, dims: int = 0) -> Op:
    return Op("function", target, name, role, nir, dims)


def _method(name: str, role: str, nir: bool = True) -> Op:
    return Op("method", name, name, role, nir)


def _module(cls: type, role: str, *fields: str, nir: bool = True, dims: int = 0) -> Op:
    return Op("module", cls, cls.__name__, role, nir, dims, fields)


_CONV = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
         "bias", "padding_mode")
_BN = ("num_features", "eps", "momentum", "affine", "track_running_stats")
_POOL = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")

OPS: tuple[Op, ...] = (
    # functions, by the stable name an SNN file gives them
    _fn(operator.add, "operator.add", "add"),
    _fn(operator.sub, "operator.sub", "sub"),
    _fn(operator.mul, "operator.mul", "mul"),
    _fn(operator.truediv, "operator.truediv", "div"),
    _fn(operator.floordiv, "operator.floordiv", "size_math", nir=False),
    _fn(operator.mod, "operator.mod", "size_math", nir=False),
    _fn(operator.neg, "operator.neg", "neg"),
    _fn(operator.getitem, "operator.getitem", "getitem"),
    _fn(getattr, "getattr", "size", nir=False),
    _fn(torch.add, "torch.add", "add"),
    _fn(torch.sub, "torch.sub", "sub"),
    _fn(torch.mul, "torch.mul", "mul"),
    _fn(torch.div, "torch.div", "div"),
    _fn(torch.mean, "torch.mean", "mean"),
    _fn(torch.cat, "torch.cat", "cat"),
    _fn(torch.flatten, "torch.flatten", "reshape"),
    _fn(torch.reshape, "torch.reshape", "reshape"),
    _fn(torch.chunk, "torch.chunk", "split", nir=False),
    _fn(torch.split, "torch.split", "split", nir=False),
    _fn(torch.squeeze, "torch.squeeze", "reshape"),
    _fn(torch.unsqueeze, "torch.unsqueeze", "reshape"),
    _fn(torch.transpose, "torch.transpose", "rearrange", nir=False),
    _fn(torch.permute, "torch.permute", "rearrange", nir=False),
    _fn(F.pad, "torch.nn.functional.pad", "pad"),
    _fn(F.avg_pool1d, "torch.nn.functional.avg_pool1d", "avg_pool", dims=1),
    _fn(F.avg_pool2d, "torch.nn.functional.avg_pool2d", "avg_pool", dims=2),
    _fn(F.adaptive_avg_pool1d, "torch.nn.functional.adaptive_avg_pool1d", "adaptive_pool", dims=1),
    _fn(F.adaptive_avg_pool2d, "torch.nn.functional.adaptive_avg_pool2d", "adaptive_pool", dims=2),
    _fn(F.linear, "torch.nn.functional.linear", "linear", nir=False),
    _fn(F.conv1d, "torch.nn.functional.conv1d", "conv", nir=False),
    _fn(F.conv2d, "torch.nn.functional.conv2d", "conv", nir=False),
    # tensor methods
    _method("view", "reshape"),
    _method("reshape", "reshape"),
    _method("flatten", "reshape"),
    _method("squeeze", "reshape"),
    _method("unsqueeze", "reshape"),
    _method("size", "size", nir=False),
    _method("dim", "size", nir=False),
    _method("contiguous", "identity"),
    _method("float", "identity"),
    _method("clone", "identity"),
    _method("neg", "neg"),
    _method("mean", "mean"),
    _method("add", "add"),
    _method("add_", "add"),
    _method("sub", "sub"),
    _method("mul", "mul"),
    _method("div", "div"),
    _method("chunk", "split", nir=False),
    _method("split", "split", nir=False),
    _method("permute", "rearrange", nir=False),
    _method("transpose", "rearrange", nir=False),
    # modules, by class name, with the constructor arguments that rebuild them
    _module(nn.Conv1d, "conv", *_CONV),
    _module(nn.Conv2d, "conv", *_CONV),
    _module(nn.Conv3d, "conv", *_CONV, nir=False),
    _module(nn.Linear, "linear", "in_features", "out_features", "bias"),
    _module(nn.BatchNorm1d, "batchnorm", *_BN),
    _module(nn.BatchNorm2d, "batchnorm", *_BN),
    _module(nn.BatchNorm3d, "batchnorm", *_BN, nir=False),
    _module(nn.AvgPool1d, "avg_pool", *_POOL, dims=1),
    _module(nn.AvgPool2d, "avg_pool", *_POOL, "divisor_override", dims=2),
    _module(nn.AvgPool3d, "avg_pool", *_POOL, "divisor_override", nir=False, dims=3),
    _module(nn.AdaptiveAvgPool1d, "adaptive_pool", "output_size", dims=1),
    _module(nn.AdaptiveAvgPool2d, "adaptive_pool", "output_size", dims=2),
    _module(nn.AdaptiveAvgPool3d, "adaptive_pool", "output_size", nir=False, dims=3),
    _module(nn.Flatten, "reshape", "start_dim", "end_dim"),
    _module(nn.Unflatten, "reshape", "dim", "unflattened_size"),
    _module(nn.Identity, "identity"),
    _module(nn.ZeroPad1d, "pad", "padding"),
    _module(nn.ZeroPad2d, "pad", "padding"),
    _module(nn.ZeroPad3d, "pad", "padding", nir=False),
    _module(nn.ConstantPad1d, "pad", "padding", "value"),
    _module(nn.ConstantPad2d, "pad", "padding", "value"),
    _module(nn.ConstantPad3d, "pad", "padding", "value", nir=False),
)
"""Every op a converted graph may hold (BatchNorm stays only where no conv precedes it, as in
pre-activation nets; a model's input ``Normalize`` is traced into ``get_attr`` buffers and
``sub`` / ``truediv`` nodes)."""

FUNCTIONS: dict[Any, Op] = {op.target: op for op in OPS if op.kind == "function"}
METHODS: dict[str, Op] = {op.target: op for op in OPS if op.kind == "method"}
MODULES: dict[type, Op] = {op.target: op for op in OPS if op.kind == "module"}


def lookup(gm: fx.GraphModule, node: fx.Node) -> Op | None:
    """The row of ``node``'s op (a module by its class or the nearest base class in the table),
    or ``None`` for an op the table lacks (and for placeholders, outputs and ``get_attr``)."""
    if node.op == "call_function":
        return FUNCTIONS.get(node.target)
    if node.op == "call_method":
        return METHODS.get(node.target)
    if node.op == "call_module":
        cls = type(gm.get_submodule(node.target))
        return next((MODULES[c] for c in cls.__mro__ if c in MODULES), None)
    return None


def targets(*roles: str, kind: str | None = None) -> frozenset:
    """The targets (functions, method names, module types) of the rows with one of ``roles``."""
    return frozenset(op.target for op in OPS if op.role in roles and kind in (None, op.kind))


def argument(args: tuple, kwargs: dict, index: int, name: str, default: Any = None) -> Any:
    """Argument ``name`` of a call, given positionally at ``index`` or by keyword."""
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def node_arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    """Argument ``name`` of a call node, given positionally at ``index`` or by keyword."""
    return argument(node.args, node.kwargs, index, name, default)
