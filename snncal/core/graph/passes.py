"""Small graph-to-graph passes that bring a traced ANN into the canonical form snncal converts.

The canonical form computes the same function as the user's model, with BatchNorm folded, Dropout
gone, and every activation a ``call_module`` of its own ``nn.ReLU`` or ``nn.Hardtanh(0, cap)``
(ReLU6), so that each activation becomes exactly one IF neuron later.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from snncal.core.graph.ops import node_arg
from snncal.core.graph.trace import ConversionError, describe, first_line, known_value, propagate

__all__ = [
    "SYNAPSES",
    "avgpool_to_dwconv",
    "blame",
    "canonicalize_activations",
    "fold_bn",
    "is_activation",
    "maxpool_to_avgpool",
    "remove_dropout",
    "set_module",
]

log = logging.getLogger("snncal")

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
SYNAPSES = (*_CONV, nn.Linear)  # the layers with weights a spike reaches (conv, linear)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


# ----------------------------------------------------------------------------- helpers
def _module(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def set_module(gm: fx.GraphModule, path: str, module: nn.Module) -> None:
    """Put ``module`` at the dotted ``path`` of ``gm`` (``layer1.0.relu``)."""
    parent, _, name = path.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, name, module)


def _call_count(gm: fx.GraphModule) -> dict[str, int]:
    counts: dict[str, int] = {}
    for n in gm.graph.nodes:
        if n.op == "call_module":
            counts[n.target] = counts.get(n.target, 0) + 1
    return counts


# What a user can do when a pass fails on one of their nodes, by pass.
ADVICE = {
    "canonicalize_activations": "write that activation as an nn.ReLU module or an F.relu call",
    "remove_dropout": "remove the Dropout from the model before converting it",
    "fold_bn": "fold that BatchNorm into its conv yourself (torch.nn.utils.fusion.fuse_conv_bn_eval)",
    "maxpool_to_avgpool": "build the model with average pooling (nn.AvgPool2d) and fine-tune it",
    "avgpool_to_dwconv": "pass convert_avgpool=False to keep that pool a linear op on spikes",
    "check_supported": "rewrite that op with linear ops and ReLUs",
}


@contextmanager
def blame(gm: fx.GraphModule, node: fx.Node, step: str) -> Iterator[None]:
    """Turn an unexpected error while pass ``step`` rewrites ``node`` into a ConversionError that
    names the node, its source line and what to do (the original error is its ``__cause__``)."""
    try:
        yield
    except ConversionError:
        raise
    except Exception as err:
        raise ConversionError(
            f"{step} failed at {describe(gm, node)}: {first_line(err)}. {ADVICE[step]}, and "
            "please report this error to snncal with the model's forward()"
        ) from err


def _finish(gm: fx.GraphModule) -> fx.GraphModule:
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def is_activation(gm: fx.GraphModule, node: fx.Node) -> bool:
    """True for the canonical activation nodes (the ones that become IF neurons)."""
    mod = _module(gm, node)
    return isinstance(mod, nn.ReLU) or (isinstance(mod, nn.Hardtanh) and mod.min_val == 0.0)


# ----------------------------------------------------------------------------- passes
def fold_bn(gm: fx.GraphModule) -> fx.GraphModule:
    """Fold each BatchNorm into the conv/linear that feeds it.

    Before: ``conv -> bn -> ...``.  After: ``conv' -> ...`` with ``conv'`` = ``bn . conv``.
    A BatchNorm that follows no conv (pre-activation nets) stays, as a per-channel affine op.
    """
    counts = _call_count(gm)
    for node in list(gm.graph.nodes):
        with blame(gm, node, "fold_bn"):
            _fold_one(gm, node, counts)
    return _finish(gm)


def _fold_one(gm: fx.GraphModule, node: fx.Node, counts: dict[str, int]) -> None:
    bn = _module(gm, node)
    if not isinstance(bn, _BN) or not node.args or not isinstance(node.args[0], fx.Node):
        return
    if bn.running_mean is None or bn.running_var is None:
        return  # normalises with each batch's statistics: refused by check_supported
    prev = node.args[0]
    layer = _module(gm, prev)
    if not isinstance(layer, SYNAPSES) or len(prev.users) > 1:
        return
    if counts[prev.target] > 1 or counts[node.target] > 1:
        return  # shared weights: folding would change the other call
    fuse = fuse_linear_bn_eval if isinstance(layer, nn.Linear) else fuse_conv_bn_eval
    set_module(gm, prev.target, fuse(layer.eval(), bn.eval()))
    node.replace_all_uses_with(prev)
    gm.graph.erase_node(node)


def remove_dropout(gm: fx.GraphModule) -> fx.GraphModule:
    """Drop Dropout (identity at inference). Before: ``x -> dropout -> y``. After: ``x -> y``."""
    for node in list(gm.graph.nodes):
        with blame(gm, node, "remove_dropout"):
            is_module = isinstance(_module(gm, node), nn.modules.dropout._DropoutNd)
            is_func = node.op == "call_function" and node.target in (F.dropout, F.dropout2d)
            if is_module or is_func:
                node.replace_all_uses_with(node_arg(node, 0, "input"))
                gm.graph.erase_node(node)
    return _finish(gm)


def maxpool_to_avgpool(gm: fx.GraphModule) -> fx.GraphModule:
    """Replace max pooling by average pooling of the same window (changes the ANN's function).

    Before: ``MaxPool2d(k, s, p)``.  After: ``AvgPool2d(k, s, p)``; adaptive likewise. Window
    sizes computed from shapes (``F.max_pool2d(x, x.size(3))``) stay graph values. Dilated pools and
    pools that return indices have no average twin and are refused.
    """
    for node in list(gm.graph.nodes):
        with blame(gm, node, "maxpool_to_avgpool"):
            _max_to_avg(gm, node)
    return _finish(gm)


def _max_to_avg(gm: fx.GraphModule, node: fx.Node) -> None:
    mod = _module(gm, node)
    is_func = node.op == "call_function"
    if isinstance(mod, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)):
        indices, dilation = mod.return_indices, getattr(mod, "dilation", 1)
    elif is_func and node.target is F.max_pool2d:
        indices, dilation = node_arg(node, 6, "return_indices", False), node_arg(node, 4, "dilation", 1)
    elif is_func and node.target is F.adaptive_max_pool2d:
        indices, dilation = node_arg(node, 2, "return_indices", False), 1
    else:
        return
    indices, dilation = known_value(indices), known_value(dilation)
    if indices or nn.modules.utils._pair(dilation) != (1, 1):
        what = "returns indices" if indices else f"is dilated ({dilation})"
        raise ConversionError(
            f"cannot turn {describe(gm, node)} into average pooling: it {what}, which average "
            f"pooling cannot do; {ADVICE['maxpool_to_avgpool']}"
        )
    if isinstance(mod, nn.MaxPool2d):
        set_module(gm, node.target, nn.AvgPool2d(
            mod.kernel_size, mod.stride, mod.padding, ceil_mode=mod.ceil_mode))
    elif isinstance(mod, nn.AdaptiveMaxPool2d):
        set_module(gm, node.target, nn.AdaptiveAvgPool2d(mod.output_size))
    elif node.target is F.max_pool2d:
        k, s = node_arg(node, 1, "kernel_size"), node_arg(node, 2, "stride")
        p, ceil = node_arg(node, 3, "padding", 0), node_arg(node, 5, "ceil_mode", False)
        node.target, node.args = F.avg_pool2d, (node_arg(node, 0, "input"), k, s or None, p)
        node.kwargs = {"ceil_mode": ceil}
    else:
        node.target = F.adaptive_avg_pool2d
        node.args, node.kwargs = (node_arg(node, 0, "input"), node_arg(node, 1, "output_size")), {}


_RELU_FUNCS = {F.relu, torch.relu, torch.relu_, F.relu_}
_RELU_METHODS = {"relu", "relu_"}


def _activation_of(gm: fx.GraphModule, node: fx.Node) -> tuple[float | None, bool] | None:
    """``(cap, inplace)`` if ``node`` is a ReLU-family activation, else ``None``."""
    mod = _module(gm, node)
    if isinstance(mod, nn.ReLU):
        return None, mod.inplace
    if isinstance(mod, nn.Hardtanh) and mod.min_val == 0.0:
        return mod.max_val, mod.inplace
    if node.op == "call_function" and node.target in _RELU_FUNCS:
        return None, node.target in (torch.relu_, F.relu_) or bool(node_arg(node, 1, "inplace"))
    if node.op == "call_method" and node.target in _RELU_METHODS:
        return None, node.target == "relu_"
    if node.op == "call_function" and node.target is F.relu6:
        return 6.0, bool(node_arg(node, 1, "inplace"))
    if node.op == "call_function" and node.target is F.hardtanh:
        low = known_value(node_arg(node, 1, "min_val", -1.0))
        high = known_value(node_arg(node, 2, "max_val", 1.0))
        if low == 0 and isinstance(high, (int, float)):
            return float(high), bool(node_arg(node, 3, "inplace"))
    return None


def canonicalize_activations(gm: fx.GraphModule) -> fx.GraphModule:
    """Give every ReLU-family activation its own non-inplace module, named after its node.

    Before: ``F.relu(x, inplace=True)``, ``x.relu_()``, a shared ``nn.ReLU`` called twice, ``F.relu6``.
    After: one ``call_module`` per activation (``nn.ReLU`` or ``nn.Hardtanh(0, cap)``). An in-place
    activation's later readers of its input are rewired to read the activation's output.
    """
    counts = _call_count(gm)
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    for node in list(gm.graph.nodes):
        with blame(gm, node, "canonicalize_activations"):
            found = _activation_of(gm, node)
            if found is not None:
                _own_activation(gm, node, *found, counts[node.target] if node.op == "call_module"
                                else 0, order)
    return _finish(gm)


def _own_activation(
    gm: fx.GraphModule, node: fx.Node, cap: float | None, inplace: bool, calls: int,
    order: dict[fx.Node, int],
) -> None:
    src = node_arg(node, 0, "input")
    if inplace and isinstance(src, fx.Node):
        for user in list(src.users):
            if user is not node and order[user] > order[node]:
                user.replace_input_with(src, node)
    path = node.target if calls == 1 else node.name
    set_module(gm, path, nn.ReLU() if cap is None else nn.Hardtanh(0.0, cap))
    node.op, node.target, node.args, node.kwargs = "call_module", path, (src,), {}


def _pool_geometry(gm: fx.GraphModule, node: fx.Node) -> tuple[tuple, tuple, tuple] | None:
    """``(kernel, stride, padding)`` of a 2-d average pool that a depthwise conv can replace.

    Window sizes computed from shapes (``F.avg_pool2d(x, x.size()[3])``, a global pool) take their
    values from the example run.
    """
    mod = _module(gm, node)
    is_func = node.op == "call_function"
    if isinstance(mod, nn.AvgPool2d):
        window = (mod.kernel_size, mod.stride, mod.padding, mod.ceil_mode, mod.count_include_pad,
                  mod.divisor_override)
    elif is_func and node.target is F.avg_pool2d:
        window = tuple(node_arg(node, i, name, default) for i, (name, default) in enumerate(
            [("kernel_size", None), ("stride", None), ("padding", 0), ("ceil_mode", False),
             ("count_include_pad", True), ("divisor_override", None)], start=1))
    elif isinstance(mod, nn.AdaptiveAvgPool2d):
        window = (mod.output_size,)
    elif is_func and node.target is F.adaptive_avg_pool2d:
        window = (node_arg(node, 1, "output_size"),)
    else:
        return None
    src = node_arg(node, 0, "input")
    in_shape = getattr(src.meta.get("tensor_meta"), "shape", ()) if isinstance(src, fx.Node) else ()
    if len(in_shape) != 4:
        return None
    window = known_value(window)
    if len(window) == 1:
        return _adaptive_geometry(window[0], tuple(in_shape[2:]))
    return _fixed_geometry(*window)


def _ints(value: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in nn.modules.utils._pair(value))


def _fixed_geometry(k, s, p, ceil, include, div) -> tuple[tuple, tuple, tuple] | None:
    k, p = _ints(k), _ints(p)
    s = _ints(s) if s else k  # avg_pool2d's stride defaults to its kernel
    if ceil or div is not None or (not include and p != (0, 0)):
        return None
    return k, s, p


def _adaptive_geometry(out, size: tuple[int, int]) -> tuple[tuple, tuple, tuple] | None:
    out = nn.modules.utils._pair(out)
    out = tuple(int(o) if o is not None else i for o, i in zip(out, size, strict=True))
    if any(i % o for i, o in zip(size, out, strict=True)):
        return None
    k = tuple(i // o for i, o in zip(size, out, strict=True))
    return k, k, (0, 0)


def avgpool_to_dwconv(gm: fx.GraphModule, example: torch.Tensor) -> fx.GraphModule:
    """The paper's "Convert AP": average pooling of spikes becomes a depthwise conv + IF neuron.

    Before: ``relu -> AvgPool2d(k, s, p)``.
    After:  ``relu -> Conv2d(C, C, k, s, p, groups=C, w=1/(kH*kW)) -> ReLU``; the new ReLU is exact
    in the ANN because its input is non-negative. Pools whose input is not an activation, or whose
    window a conv cannot express, stay linear ops on spike trains. Windows computed from shapes
    (``F.avg_pool2d(x, x.size()[3])``) take their values on ``example``.
    """
    propagate(gm, example)
    for node in list(gm.graph.nodes):
        with blame(gm, node, "avgpool_to_dwconv"):
            _pool_to_conv(gm, node, example.device)
    return _finish(gm)


def _pool_to_conv(gm: fx.GraphModule, node: fx.Node, device: torch.device) -> None:
    geometry = _pool_geometry(gm, node)
    if geometry is None:
        return
    src = node_arg(node, 0, "input")
    if not is_activation(gm, src):
        log.debug("%s: pooling input is not an activation; kept as a linear op", node.name)
        return
    (kh, kw), stride, padding = geometry
    meta = src.meta["tensor_meta"]
    channels = meta.shape[1]
    conv = nn.Conv2d(channels, channels, (kh, kw), stride, padding, groups=channels,
                     device=device, dtype=meta.dtype)
    nn.init.constant_(conv.weight, 1.0 / (kh * kw))
    nn.init.zeros_(conv.bias)
    path = node.target if node.op == "call_module" else node.name
    set_module(gm, path, conv)
    set_module(gm, f"{path}_if", nn.ReLU())
    with gm.graph.inserting_after(node):
        conv_node = gm.graph.call_module(path, (src,))
    with gm.graph.inserting_after(conv_node):
        act_node = gm.graph.call_module(f"{path}_if", (conv_node,))
    conv_node.meta, act_node.meta = dict(node.meta), dict(node.meta)
    node.replace_all_uses_with(act_node)
    gm.graph.erase_node(node)
