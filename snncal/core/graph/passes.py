"""Small graph-to-graph passes that bring a traced ANN into the canonical form snncal converts.

The canonical form computes the same function as the user's model, with BatchNorm folded, Dropout
gone, and every activation a ``call_module`` of its own ``nn.ReLU`` or ``nn.Hardtanh(0, cap)``
(ReLU6), so that each activation becomes exactly one IF neuron later.
"""

from __future__ import annotations

import logging
import operator

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from snncal.core.graph.trace import ConversionError, node_location

log = logging.getLogger("snncal")

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


# ----------------------------------------------------------------------------- helpers
def _module(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def _set_module(gm: fx.GraphModule, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, name, module)


def _call_count(gm: fx.GraphModule) -> dict[str, int]:
    counts: dict[str, int] = {}
    for n in gm.graph.nodes:
        if n.op == "call_module":
            counts[n.target] = counts.get(n.target, 0) + 1
    return counts


def _arg(node: fx.Node, index: int, name: str, default=None):
    """Argument ``name`` of a call node, given positionally at ``index`` or by keyword."""
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


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
        bn = _module(gm, node)
        if not isinstance(bn, _BN) or not isinstance(node.args[0], fx.Node):
            continue
        prev = node.args[0]
        layer = _module(gm, prev)
        if not isinstance(layer, (*_CONV, nn.Linear)) or len(prev.users) > 1:
            continue
        if counts[prev.target] > 1 or counts[node.target] > 1:
            continue  # shared weights: folding would change the other call
        fuse = fuse_linear_bn_eval if isinstance(layer, nn.Linear) else fuse_conv_bn_eval
        _set_module(gm, prev.target, fuse(layer.eval(), bn.eval()))
        node.replace_all_uses_with(prev)
        gm.graph.erase_node(node)
    return _finish(gm)


def remove_dropout(gm: fx.GraphModule) -> fx.GraphModule:
    """Drop Dropout (identity at inference). Before: ``x -> dropout -> y``. After: ``x -> y``."""
    for node in list(gm.graph.nodes):
        is_module = isinstance(_module(gm, node), nn.modules.dropout._DropoutNd)
        is_func = node.op == "call_function" and node.target in (F.dropout, F.dropout2d)
        if is_module or is_func:
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
    return _finish(gm)


def maxpool_to_avgpool(gm: fx.GraphModule) -> fx.GraphModule:
    """Replace max pooling by average pooling of the same window (changes the ANN's function).

    Before: ``MaxPool2d(k, s, p)``.  After: ``AvgPool2d(k, s, p)``; adaptive likewise.
    """
    for node in list(gm.graph.nodes):
        mod = _module(gm, node)
        if isinstance(mod, nn.MaxPool2d):
            if mod.dilation not in (1, (1, 1)):
                raise ConversionError(f"{node.name}: dilated max pooling has no average twin")
            _set_module(gm, node.target, nn.AvgPool2d(
                mod.kernel_size, mod.stride, mod.padding, ceil_mode=mod.ceil_mode))
        elif isinstance(mod, nn.AdaptiveMaxPool2d):
            _set_module(gm, node.target, nn.AdaptiveAvgPool2d(mod.output_size))
        elif node.op == "call_function" and node.target is F.max_pool2d:
            k = _arg(node, 1, "kernel_size")
            s, p = _arg(node, 2, "stride"), _arg(node, 3, "padding", 0)
            node.target, node.args = F.avg_pool2d, (node.args[0], k, s or None, p)
            node.kwargs = {"ceil_mode": node.kwargs.get("ceil_mode", False)}
        elif node.op == "call_function" and node.target is F.adaptive_max_pool2d:
            node.target = F.adaptive_avg_pool2d
            node.args, node.kwargs = (node.args[0], _arg(node, 1, "output_size")), {}
    return _finish(gm)


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
        return None, node.target in (torch.relu_, F.relu_) or bool(_arg(node, 1, "inplace"))
    if node.op == "call_method" and node.target in _RELU_METHODS:
        return None, node.target == "relu_"
    if node.op == "call_function" and node.target is F.relu6:
        return 6.0, bool(_arg(node, 1, "inplace"))
    if node.op == "call_function" and node.target is F.hardtanh and _arg(node, 1, "min_val") == 0:
        return float(_arg(node, 2, "max_val", 1.0)), bool(_arg(node, 3, "inplace"))
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
        found = _activation_of(gm, node)
        if found is None:
            continue
        cap, inplace = found
        src = node.args[0]
        if inplace:
            for user in list(src.users):
                if user is not node and order[user] > order[node]:
                    user.replace_input_with(src, node)
        path = node.target if node.op == "call_module" and counts[node.target] == 1 else node.name
        _set_module(gm, path, nn.ReLU() if cap is None else nn.Hardtanh(0.0, cap))
        node.op, node.target, node.args, node.kwargs = "call_module", path, (src,), {}
    return _finish(gm)


def _pool_geometry(gm: fx.GraphModule, node: fx.Node) -> tuple[tuple, tuple, tuple] | None:
    """``(kernel, stride, padding)`` of a 2-d average pool that a depthwise conv can replace."""
    pair = nn.modules.utils._pair
    mod = _module(gm, node)
    src = node.args[0] if node.args else None
    meta = src.meta.get("tensor_meta") if isinstance(src, fx.Node) else None
    in_shape = getattr(meta, "shape", ())
    if len(in_shape) != 4:
        return None
    if isinstance(mod, nn.AvgPool2d) or (node.op == "call_function" and node.target is F.avg_pool2d):
        if mod is not None:
            k, s, p = mod.kernel_size, mod.stride, mod.padding
            ceil, include, div = mod.ceil_mode, mod.count_include_pad, mod.divisor_override
        else:
            k, s, p = _arg(node, 1, "kernel_size"), _arg(node, 2, "stride"), _arg(node, 3, "padding", 0)
            ceil, include = _arg(node, 4, "ceil_mode", False), _arg(node, 5, "count_include_pad", True)
            div = _arg(node, 6, "divisor_override")
        k, p = pair(k), pair(p)
        s = pair(s) if s else k
        if ceil or div is not None or (not include and p != (0, 0)):
            return None
        return k, s, p
    if isinstance(mod, nn.AdaptiveAvgPool2d) or (
        node.op == "call_function" and node.target is F.adaptive_avg_pool2d
    ):
        out = pair(mod.output_size if mod is not None else _arg(node, 1, "output_size"))
        size = in_shape[2:]
        out = tuple(o if o is not None else i for o, i in zip(out, size, strict=True))
        if any(i % o for i, o in zip(size, out, strict=True)):
            return None
        k = tuple(i // o for i, o in zip(size, out, strict=True))
        return k, k, (0, 0)
    return None


def avgpool_to_dwconv(gm: fx.GraphModule, example: torch.Tensor) -> fx.GraphModule:
    """The paper's "Convert AP": average pooling of spikes becomes a depthwise conv + IF neuron.

    Before: ``relu -> AvgPool2d(k, s, p)``.
    After:  ``relu -> Conv2d(C, C, k, s, p, groups=C, w=1/(kH*kW)) -> ReLU``; the new ReLU is exact
    in the ANN because its input is non-negative. Pools whose input is not an activation, or whose
    window a conv cannot express, stay linear ops on spike trains.
    """
    ShapeProp(gm).propagate(example)
    for node in list(gm.graph.nodes):
        geometry = _pool_geometry(gm, node)
        if geometry is None:
            continue
        src = node.args[0]
        if not is_activation(gm, src):
            log.debug("%s: pooling input is not an activation; kept as a linear op", node.name)
            continue
        (kh, kw), stride, padding = geometry
        channels = src.meta["tensor_meta"].shape[1]
        conv = nn.Conv2d(channels, channels, (kh, kw), stride, padding, groups=channels)
        nn.init.constant_(conv.weight, 1.0 / (kh * kw))
        nn.init.zeros_(conv.bias)
        path = node.target if node.op == "call_module" else node.name
        _set_module(gm, path, conv)
        _set_module(gm, f"{path}_if", nn.ReLU())
        with gm.graph.inserting_after(node):
            conv_node = gm.graph.call_module(path, (src,))
        with gm.graph.inserting_after(conv_node):
            act_node = gm.graph.call_module(f"{path}_if", (conv_node,))
        conv_node.meta, act_node.meta = dict(node.meta), dict(node.meta)
        node.replace_all_uses_with(act_node)
        gm.graph.erase_node(node)
    return _finish(gm)


# ----------------------------------------------------------------------------- validation
_LINEAR_MODULES = (
    *_CONV, *_BN, nn.Linear, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.Flatten, nn.Unflatten, nn.Identity,
    nn.ZeroPad2d, nn.ConstantPad2d,
)
_LINEAR_FUNCS = {
    operator.add, operator.sub, operator.neg, operator.getitem, operator.floordiv, torch.add,
    torch.sub, torch.cat, torch.flatten, torch.reshape, torch.chunk, torch.split, torch.squeeze,
    torch.unsqueeze, torch.transpose, torch.permute, F.pad, F.avg_pool2d, F.avg_pool1d,
    F.adaptive_avg_pool2d, F.linear, F.conv2d, F.conv1d, torch.mean, getattr,
}
_SCALAR_FUNCS = {operator.mul, operator.truediv, torch.mul}  # linear only with a constant factor
_LINEAR_METHODS = {
    "view", "reshape", "flatten", "size", "contiguous", "mean", "add", "add_", "sub", "chunk",
    "split", "squeeze", "unsqueeze", "dim", "float", "permute", "transpose", "mul", "div",
}
_HINTS = {
    nn.MaxPool2d: "pass maxpool_to_avgpool=True (and fine-tune), or build the model with AvgPool2d",
    F.max_pool2d: "pass maxpool_to_avgpool=True (and fine-tune), or build the model with avg_pool2d",
}
_DEFAULT_HINT = (
    "only linear ops and ReLU-family activations (ReLU, ReLU6) convert into integrate-and-fire "
    "neurons; replace it (e.g. SiLU/GELU -> ReLU) and fine-tune the ANN"
)


def _op_name(gm: fx.GraphModule, node: fx.Node) -> tuple[str, object]:
    if node.op == "call_module":
        mod = _module(gm, node)
        return f"module {type(mod).__name__}", type(mod)
    if node.op == "call_method":
        return f"method .{node.target}()", node.target
    return f"function {getattr(node.target, '__name__', node.target)}", node.target


def check_supported(gm: fx.GraphModule) -> None:
    """Raise one clear :class:`ConversionError` for the first op that is not linear or a ReLU."""
    dynamic: set[fx.Node] = set()  # values that depend on the input (not constants)
    for node in gm.graph.nodes:
        if node.op == "placeholder" or any(a in dynamic for a in node.all_input_nodes):
            dynamic.add(node)
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        ok = (
            is_activation(gm, node)
            or (node.op == "call_module" and isinstance(_module(gm, node), _LINEAR_MODULES))
            or (node.op == "call_function" and node.target in _LINEAR_FUNCS)
            or (node.op == "call_method" and node.target in _LINEAR_METHODS)
        )
        if node.target in _SCALAR_FUNCS or node.target in ("mul", "div"):
            ok = sum(a in dynamic for a in node.args if isinstance(a, fx.Node)) <= 1
        if node.target is torch.cat and _arg(node, 1, "dim", 0) == 0:
            ok = False  # batch (and time) live in dim 0
        if not ok:
            what, key = _op_name(gm, node)
            hint = _HINTS.get(key, _DEFAULT_HINT)
            raise ConversionError(
                f"cannot convert node '{node.name}' ({what}) at {node_location(node)}: {hint}"
            )
