"""NIR export, one function per kind of op: each gives the fx node's value as a sum of NIR node
outputs. Which function exports which op is the op table's ``role``
(:mod:`snncal.core.graph.ops`); an op whose row says ``nir=False`` is refused with one clear line."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from snncal.core.export.nir_graph import (
    ENCODING_NOTES,
    FIRING_RULE,
    READOUT,
    RESET_RULES,
    TIME_STEP,
    NirBuilder,
    Sum,
    as_array,
    broadcast,
    dense_groups,
    int_tuple,
    merge,
)
from snncal.core.graph.ops import lookup, node_arg
from snncal.core.neuron import IFNeuron

__all__ = ["EXPORTERS", "exporter"]


# ----------------------------------------------------------------------------- exporters: neurons, layers
def _neuron(ex: NirBuilder, node: fx.Node) -> Sum:
    """``IFNeuron`` -> ``IF`` (r = 1, v_reset = 0) -> ``Scale`` (spikes of height Vth)."""
    neuron: IFNeuron = ex.module(node)
    shape, T = ex.shape(node), ex.snn.T
    vth = broadcast(neuron.threshold, shape)
    bias = neuron.shift_current(T)
    meta = {
        "snncal_name": node.target,
        "reset": neuron.reset,
        "reset_rule": RESET_RULES[neuron.reset],
        "v0": broadcast(neuron.v0, shape),
        "firing_rule": FIRING_RULE,
        "time_step": TIME_STEP,
        "bias_current": broadcast(bias, shape),
        "input_encoding": ENCODING_NOTES[ex.snn.encoding],
        "readout": READOUT.format(T=T),
        "T": int(T),
    }
    if neuron.step_bias is not None:
        meta["step_bias"] = neuron.step_bias.flatten(1).cpu().numpy()
    layer = ex.nir.IF(r=np.ones(shape, dtype=np.float32), v_threshold=vth,
                      v_reset=np.zeros(shape, dtype=np.float32), metadata=meta)
    spikes = ex.add(node.target, layer, ex.source(node), shape)
    return ex.add(f"{node.target}.vth", ex.nir.Scale(scale=vth), spikes, shape)


def _conv_padding(ex: NirBuilder, node: fx.Node, conv: nn.Module) -> tuple[int, ...]:
    n = conv.weight.dim() - 2
    if not isinstance(conv.padding, str):
        return int_tuple(conv.padding, n)
    if conv.padding == "valid":
        return (0,) * n
    total = [d * (k - 1) for d, k in zip(int_tuple(conv.dilation, n), conv.weight.shape[2:])]
    if any(t % 2 for t in total):
        raise ex.fail(node, "padding='same' with an even kernel pads unequally; NIR pads both sides alike")
    return tuple(t // 2 for t in total)


def _conv(ex: NirBuilder, node: fx.Node) -> Sum:
    """Conv1d / Conv2d -> NIR Conv1d / Conv2d (grouped ones dense)."""
    conv = ex.module(node)
    if conv.padding_mode != "zeros":
        raise ex.fail(node, f"padding_mode={conv.padding_mode!r}; NIR convolutions pad with zeros")
    n = conv.weight.dim() - 2
    weight = dense_groups(as_array(conv.weight), conv.groups)
    bias = as_array(conv.bias) if conv.bias is not None else None
    meta = {"snncal_name": node.target, "snncal_groups": int(conv.groups)}
    return ex.conv(node, node.target, ex.source(node), ex.shape(node.args[0]), weight, bias,
                   int_tuple(conv.stride, n), _conv_padding(ex, node, conv),
                   int_tuple(conv.dilation, n), meta)


def _linear(ex: NirBuilder, node: fx.Node) -> Sum:
    """Linear -> Affine (Linear without bias)."""
    lin = ex.module(node)
    if len(ex.shape(node.args[0])) != 1:
        raise ex.fail(node, "NIR's Affine maps vectors: flatten the input first")
    meta = {"snncal_name": node.target}
    if lin.bias is None:
        layer = ex.nir.Linear(weight=as_array(lin.weight), metadata=meta)
    else:
        layer = ex.nir.Affine(weight=as_array(lin.weight), bias=as_array(lin.bias), metadata=meta)
    return ex.add(node.target, layer, ex.source(node), ex.shape(node))


def _batchnorm(ex: NirBuilder, node: fx.Node) -> Sum:
    """A BatchNorm left unfolded: per-channel ``x * scale + shift`` (eval statistics)."""
    bn = ex.module(node)
    if bn.running_mean is None:
        raise ex.fail(node, "a BatchNorm without running statistics depends on the batch")
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale + (bn.bias if bn.bias is not None else 0)
    return ex.channel_affine(node, node.target, ex.source(node), as_array(scale), as_array(shift))


# ----------------------------------------------------------------------------- exporters: pooling
def _pool_args(ex: NirBuilder, node: fx.Node, n: int) -> tuple[tuple, tuple, tuple, bool, bool, Any]:
    """``(kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)``."""
    if node.op == "call_module":
        m = ex.module(node)
        k, s, p, ceil, include = m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad
        div = getattr(m, "divisor_override", None)
    else:
        k, s = node_arg(node, 1, "kernel_size"), node_arg(node, 2, "stride")
        p = node_arg(node, 3, "padding", 0)
        ceil, include = node_arg(node, 4, "ceil_mode", False), node_arg(node, 5, "count_include_pad", True)
        div = node_arg(node, 6, "divisor_override")
    k = int_tuple(k, n)
    return k, int_tuple(s, n) if s else k, int_tuple(p, n), bool(ceil), bool(include), div


def _pool(
    ex: NirBuilder, node: fx.Node, kernel: tuple, stride: tuple, padding: tuple, divisor: int,
    out: tuple[int, ...] | None = None,
) -> Sum:
    """Average over windows (zeros padded, ``divisor`` per window): AvgPool2d when plain, SumPool2d +
    Scale when padded or with another divisor, a dense Conv1d with a diagonal kernel in 1-d."""
    in_shape, out = ex.shape(node.args[0]), out or ex.shape(node)
    floor = tuple((i + 2 * p - k) // s + 1 for i, p, k, s in zip(in_shape[1:], padding, kernel, stride))
    if floor != out[1:]:
        raise ex.fail(node, f"ceil_mode gives {out[1:]} where NIR pools give {floor}; use ceil_mode=False")
    src = ex.source(node)
    if len(kernel) == 1:
        c = in_shape[0]
        weight = np.zeros((c, c, kernel[0]), dtype=np.float32)
        weight[np.arange(c), np.arange(c)] = 1.0 / divisor
        return ex.conv(node, node.name, src, in_shape, weight, None, stride, padding, out=out)
    arrays = {"kernel_size": np.array(kernel), "stride": np.array(stride), "padding": np.array(padding)}
    if not any(padding) and divisor == math.prod(kernel):
        layer = ex.nir.AvgPool2d(**arrays)
        scale = None
    else:
        layer, scale = ex.nir.SumPool2d(**arrays), 1.0 / divisor
    layer.input_type, layer.output_type = {"input": np.array(in_shape)}, {"output": np.array(out)}
    pooled = ex.add(node.target if node.op == "call_module" else node.name, layer, src, out)
    return pooled if scale is None else merge({}, pooled, scale)


def _avg_pool(ex: NirBuilder, node: fx.Node) -> Sum:
    """AvgPool1d / AvgPool2d (module or function)."""
    n = len(ex.shape(node)) - 1
    kernel, stride, padding, _, include, div = _pool_args(ex, node, n)
    if not include and any(padding):
        raise ex.fail(node, "count_include_pad=False averages fewer inputs at the border; no NIR "
                            "pool does that: use count_include_pad=True")
    return _pool(ex, node, kernel, stride, padding, int(div) if div else math.prod(kernel))


def _adaptive_pool(ex: NirBuilder, node: fx.Node) -> Sum:
    """AdaptiveAvgPool1d / 2d whose windows tile the input: an average pool of fixed window."""
    in_size, out_size = ex.shape(node.args[0])[1:], ex.shape(node)[1:]
    if any(i % o for i, o in zip(in_size, out_size)):
        raise ex.fail(node, f"adaptive pooling {in_size} -> {out_size}: its windows do not tile the "
                            "input, which no NIR pool computes")
    kernel = tuple(i // o for i, o in zip(in_size, out_size))
    return _pool(ex, node, kernel, kernel, (0,) * len(kernel), math.prod(kernel))


def _mean(ex: NirBuilder, node: fx.Node) -> Sum:
    """``x.mean((2, 3))`` (all spatial dims, a global average pool): a pool, then Flatten unless
    ``keepdim``."""
    in_shape = ex.shape(node.args[0])
    rank, dims = len(in_shape) + 1, node_arg(node, 1, "dim")
    dims = sorted(int(d) % rank for d in (dims if isinstance(dims, (tuple, list)) else [dims]))
    if dims != list(range(2, rank)) or rank < 3:
        raise ex.fail(node, f"a mean over dims {dims}: only a mean over all spatial dimensions exports")
    kernel = tuple(in_shape[1:])
    pooled_shape = (in_shape[0], *(1,) * len(kernel))
    pooled = _pool(ex, node, kernel, kernel, (0,) * len(kernel), math.prod(kernel), pooled_shape)
    if ex.shape(node) == pooled_shape:
        return pooled
    layer = ex.nir.Flatten(input_type=np.array(pooled_shape), start_dim=0, end_dim=-1)
    return ex.add(f"{node.name}_flatten", layer, pooled, ex.shape(node))


# ----------------------------------------------------------------------------- exporters: shapes
def _identity(ex: NirBuilder, node: fx.Node) -> Sum:
    return ex.source(node)


def _reshape(ex: NirBuilder, node: fx.Node) -> Sum:
    """view / reshape / flatten / squeeze: the identity, or Flatten to ``[N, -1]``."""
    in_shape, out = ex.shape(node.args[0]), ex.shape(node)
    if out == in_shape:
        return ex.source(node)
    if out != (math.prod(in_shape),):
        raise ex.fail(node, f"reshape {in_shape} -> {out}: NIR can only flatten all but the batch dimension")
    layer = ex.nir.Flatten(input_type=np.array(in_shape), start_dim=0, end_dim=-1)
    return ex.add(node.name, layer, ex.source(node), out)


def _cat(ex: NirBuilder, node: fx.Node) -> Sum:
    """torch.cat on channels: each input copied into its channels by a 0/1 conv, edges summed."""
    tensors, dim = node.args[0], node_arg(node, 1, "dim", 0)
    out = ex.shape(node)
    if dim % (len(out) + 1) != 1:
        raise ex.fail(node, f"concatenation along dim {dim}: NIR export concatenates channels (dim 1) only")
    total, offset = {}, 0
    for i, t in enumerate(tensors):
        if not ex.is_spiking(t):
            raise ex.fail(node, f"input {i} is a constant, not computed from the network's input")
        in_shape = ex.shape(t)
        pairs = [(offset + c, c) for c in range(in_shape[0])]
        total = merge(total, ex.select(node, f"{node.name}_{i}", ex.sums[t], in_shape, pairs))
        offset += in_shape[0]
    return total


def _getitem(ex: NirBuilder, node: fx.Node) -> Sum:
    """``x[:, c0:c1:k, h0::s, w0::s]``: a 0/1 conv selecting channels, an offset and a stride."""
    idx = node.args[1] if isinstance(node.args[1], tuple) else (node.args[1],)
    in_shape = ex.shape(node.args[0])
    if any(not isinstance(i, slice) for i in idx) or len(idx) > len(in_shape) + 1:
        raise ex.fail(node, "only slices export (no integer index, None, ... or tensor index)")
    idx = idx + (slice(None),) * (len(in_shape) + 1 - len(idx))
    if idx[0] != slice(None):
        raise ex.fail(node, "it slices the batch dimension")
    ranges = [range(*s.indices(size)) for s, size in zip(idx[1:], in_shape)]
    spatial = ranges[1:]
    for r, size in zip(spatial, in_shape[1:]):
        if len(r) == 0 or len(r) != (size - r.start - 1) // r.step + 1:
            raise ex.fail(node, f"the slice {r} stops before the end; NIR convs cannot crop the end")
    if all(r == range(size) for r, size in zip(ranges, in_shape)):
        return ex.source(node)
    pairs = list(enumerate(ranges[0]))
    return ex.select(node, node.name, ex.source(node), in_shape, pairs,
                     tuple(r.start for r in spatial), tuple(r.step for r in spatial))


def _pad(ex: NirBuilder, node: fx.Node) -> Sum:
    """Zero padding (F.pad, ZeroPad2d, ConstantPad with 0): channels placed by a 0/1 conv, equal
    spatial padding as the conv's padding."""
    if node.op == "call_module":
        m = ex.module(node)
        pad, mode, value = int_tuple(m.padding, 1), "constant", getattr(m, "value", 0)
    else:
        pad = fx.node.map_arg(node.args[1], lambda n: ex.values[n])  # sizes computed in the graph
        mode, value = node_arg(node, 2, "mode", "constant"), node_arg(node, 3, "value")
    if mode != "constant" or value not in (None, 0, 0.0):
        raise ex.fail(node, f"padding mode {mode!r} with value {value}: NIR convs pad with zeros only")
    in_shape = ex.shape(node.args[0])
    pairs = [tuple(pad[i : i + 2]) for i in range(0, len(pad), 2)]  # last dim first
    if len(pairs) > len(in_shape):
        raise ex.fail(node, "it pads the batch dimension")
    per_dim = [(0, 0)] * (len(in_shape) - len(pairs)) + pairs[::-1]
    if any(lo < 0 or hi < 0 for lo, hi in per_dim):
        raise ex.fail(node, "negative padding (cropping) has no NIR node")
    if any(lo != hi for lo, hi in per_dim[1:]):
        raise ex.fail(node, "unequal padding of the two sides; NIR convs pad both sides alike")
    lo = per_dim[0][0]
    pairs_c = [(lo + c, c) for c in range(in_shape[0])]
    return ex.select(node, node.name, ex.source(node), in_shape, pairs_c,
                     padding=tuple(p for p, _ in per_dim[1:]))


# ----------------------------------------------------------------------------- exporters: arithmetic
def _operands(ex: NirBuilder, node: fx.Node) -> tuple[Any, Any]:
    if node.kwargs or len(node.args) != 2:
        raise ex.fail(node, "only two-operand arithmetic without keyword arguments exports")
    return node.args


def _add_sub(ex: NirBuilder, node: fx.Node, sign: float) -> Sum:
    """``a + b`` / ``a - b``: two spiking values sum their terms; a constant is a per-channel shift."""
    a, b = _operands(ex, node)
    if ex.is_spiking(a) and ex.is_spiking(b):
        if ex.shape(a) != ex.shape(b):
            raise ex.fail(node, f"a broadcasting sum {ex.shape(a)} + {ex.shape(b)}; NIR sums equal shapes")
        return merge(ex.sums[a], ex.sums[b], sign)
    x, const, x_sign = (a, b, 1.0) if ex.is_spiking(a) else (b, a, sign)
    if ex.shape(x) != ex.shape(node):
        raise ex.fail(node, "a constant that broadcasts the value to a larger shape")
    shift = ex.per_channel(node, const) * (sign if x is a else 1.0)
    scale = np.full(ex.shape(node)[0], x_sign, dtype=np.float32)
    return ex.channel_affine(node, node.name, ex.sums[x], scale, shift)


def _add(ex: NirBuilder, node: fx.Node) -> Sum:
    return _add_sub(ex, node, 1.0)


def _sub(ex: NirBuilder, node: fx.Node) -> Sum:
    return _add_sub(ex, node, -1.0)


def _mul_div(ex: NirBuilder, node: fx.Node, divide: bool) -> Sum:
    """``x * c`` / ``x / c`` with a constant ``c``: a coefficient or a per-channel scale."""
    a, b = _operands(ex, node)
    if ex.is_spiking(a) == ex.is_spiking(b) or (divide and not ex.is_spiking(a)):
        raise ex.fail(node, "a product or quotient of two spiking values (or by one) is not linear")
    x, const = (a, b) if ex.is_spiking(a) else (b, a)
    if ex.shape(x) != ex.shape(node):
        raise ex.fail(node, "a constant that broadcasts the value to a larger shape")
    scale = ex.per_channel(node, const)
    scale = 1.0 / scale if divide else scale
    return ex.channel_affine(node, node.name, ex.sums[x], scale, np.zeros_like(scale))


def _mul(ex: NirBuilder, node: fx.Node) -> Sum:
    return _mul_div(ex, node, divide=False)


def _div(ex: NirBuilder, node: fx.Node) -> Sum:
    return _mul_div(ex, node, divide=True)


def _neg(ex: NirBuilder, node: fx.Node) -> Sum:
    return merge({}, ex.source(node), -1.0)


EXPORTERS: dict[str, Callable[[NirBuilder, fx.Node], Sum]] = {
    "add": _add, "sub": _sub, "mul": _mul, "div": _div, "neg": _neg,
    "conv": _conv, "linear": _linear, "batchnorm": _batchnorm,
    "avg_pool": _avg_pool, "adaptive_pool": _adaptive_pool, "mean": _mean,
    "reshape": _reshape, "identity": _identity, "cat": _cat, "getitem": _getitem, "pad": _pad,
}
"""The exporter of each role of the op table that NIR can write."""


def exporter(ex: NirBuilder, node: fx.Node) -> Callable[[NirBuilder, fx.Node], Sum] | None:
    """The function that exports ``node``, or ``None`` if NIR cannot express its op."""
    if node.op == "call_module" and isinstance(ex.module(node), IFNeuron):
        return _neuron
    op = lookup(ex.gm, node)
    return EXPORTERS[op.role] if op is not None and op.nir else None
