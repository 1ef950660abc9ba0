"""The NIR graph being built: its nodes and edges, every fx value as a weighted sum of NIR node
outputs (:data:`Sum`), the node kinds NIR offers (conv, selection by 0/1 weights, per-channel
affine), and the semantics snncal writes into its metadata. The per-op exporters that use it are in
:mod:`~snncal.core.export.nir_ops`; the walk is :func:`~snncal.core.export.nir.export_nir`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, fx, nn

from snncal.core.engine import SpikingNetwork
from snncal.core.graph.trace import ConversionError, node_location

__all__ = [
    "BATCH",
    "ENCODING_NOTES",
    "FIRING_RULE",
    "READOUT",
    "RESET_RULES",
    "TIME_STEP",
    "UNSUPPORTED",
    "NirBuilder",
    "Sum",
    "as_array",
    "broadcast",
    "dense_groups",
    "describe_op",
    "int_tuple",
    "merge",
]

Sum = dict[str, float]  # NIR node name -> coefficient; the value is sum(coef * output(name))
BATCH = 2  # example batch of the shape propagation: tells the batch dimension from a size-1 one

FIRING_RULE = "spike when v >= v_threshold (NIR's IF: v > v_threshold)"
TIME_STEP = (
    "discrete steps, dt = 1, r = 1, starting from v = v0; each step: charge v += I[t] (the sum of "
    "the incoming edges at step t), fire s = (v >= v_threshold), reset where s; the IF outputs s "
    "and the Scale node after it multiplies s by v_threshold"
)
RESET_RULES = {
    "subtract": "reset by subtraction: v -= v_threshold on a spike (NIR's IF sets v = v_reset = 0)",
    "zero": "reset to zero: v = 0 on a spike (as NIR's IF with v_reset = 0)",
}
ENCODING_NOTES = {
    "direct": "direct: the input (image) is the same constant current at every one of the T steps",
    "poisson": "poisson: at each step, spikes of height max|x| (per sample) whose mean is the input x",
}
READOUT = "the output is the graph's Output value averaged over the T = {T} steps"
UNSUPPORTED = (
    "NIR export handles conv, linear, average pooling, flatten, batch norm, residual sums, channel "
    "concatenation, slicing, zero padding and per-channel constants; build the ANN from those ops, "
    "or keep the network in snncal's own checkpoint format (save_snn)"
)


# ----------------------------------------------------------------------------- helpers
def as_array(t: Tensor | float, dtype=np.float32) -> np.ndarray:
    """A tensor or number as a NumPy array (float32 unless ``dtype``)."""
    if isinstance(t, Tensor):
        return t.detach().cpu().numpy().astype(dtype)
    return np.asarray(t, dtype=dtype)


def broadcast(t: Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """A scalar, per-channel or element-wise buffer as an array of ``shape``."""
    return np.ascontiguousarray(np.broadcast_to(as_array(t), shape))


def merge(a: Sum, b: Sum, scale: float = 1.0) -> Sum:
    """``a + scale * b`` as one sum; terms that cancel drop out."""
    out = dict(a)
    for name, coef in b.items():
        out[name] = out.get(name, 0.0) + scale * coef
    return {k: v for k, v in out.items() if v != 0}


def int_tuple(v: int | Sequence[int], n: int) -> tuple[int, ...]:
    """An int or a sequence of ints as ``n`` ints."""
    return tuple(int(x) for x in v) if isinstance(v, (tuple, list)) else (int(v),) * n


def describe_op(gm: fx.GraphModule, node: fx.Node) -> str:
    """The kind of op ``node`` calls: ``module Conv2d``, ``method .view()``, ``function add``."""
    if node.op == "call_module":
        return f"module {type(gm.get_submodule(node.target)).__name__}"
    if node.op == "call_method":
        return f"method .{node.target}()"
    return f"function {getattr(node.target, '__name__', node.target)}"


def dense_groups(weight: np.ndarray, groups: int) -> np.ndarray:
    """A grouped conv's weight ``[C_out, C_in / g, *k]`` as the dense ``[C_out, C_in, *k]`` one."""
    if groups == 1:
        return weight
    c_out, c_in_g = weight.shape[:2]
    dense = np.zeros((c_out, c_in_g * groups, *weight.shape[2:]), dtype=weight.dtype)
    step = c_out // groups
    for g in range(groups):
        dense[g * step : (g + 1) * step, g * c_in_g : (g + 1) * c_in_g] = weight[g * step : (g + 1) * step]
    return dense


# ----------------------------------------------------------------------------- the export
class NirBuilder:
    """One export: the NIR nodes and edges so far, and every fx value as a sum of NIR outputs."""

    def __init__(
        self, nir_mod: Any, snn: SpikingNetwork, values: dict[fx.Node, Any], dynamic: set[fx.Node]
    ) -> None:
        self.nir, self.snn, self.gm = nir_mod, snn, snn.graph
        self.values, self.dynamic = values, dynamic
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []
        self.shapes: dict[str, tuple[int, ...]] = {}  # NIR node name -> output shape
        self.sums: dict[fx.Node, Sum] = {}
        self._scales: dict[tuple[str, float], str] = {}

    # -- errors, shapes, sources
    def fail(self, node: fx.Node, reason: str) -> ConversionError:
        return ConversionError(
            f"cannot export node '{node.name}' ({describe_op(self.gm, node)}) at "
            f"{node_location(node)} to NIR: {reason}"
        )

    def shape(self, node: fx.Node) -> tuple[int, ...]:
        """Shape of a node's value without the batch dimension."""
        return tuple(self.values[node].shape[1:])

    def is_spiking(self, arg: Any) -> bool:
        """True for a value computed from the network's input (the others are constants)."""
        return isinstance(arg, fx.Node) and arg in self.sums

    def source(self, node: fx.Node, index: int = 0) -> Sum:
        arg = node.args[index] if len(node.args) > index else None
        if not self.is_spiking(arg):
            raise self.fail(node, f"its input {arg!r} is not computed from the network's input")
        return self.sums[arg]

    def module(self, node: fx.Node) -> nn.Module:
        return self.gm.get_submodule(node.target)

    # -- building
    def add(self, name: str, nir_node: Any, inputs: Sum, shape: tuple[int, ...]) -> Sum:
        """Add ``nir_node`` (output ``shape``) with one edge from each term of ``inputs``."""
        name = self._unique(name)
        self.nodes[name], self.shapes[name] = nir_node, tuple(shape)
        for src, coef in inputs.items():
            self.edges.append((src if coef == 1 else self._scaled(src, coef), name))
        return {name: 1.0}

    def _unique(self, base: str) -> str:
        base = base.replace(".", "_")
        name, i = base, 0
        while name in self.nodes:
            i += 1
            name = f"{base}_{i}"
        return name

    def _scaled(self, src: str, coef: float) -> str:
        """A ``Scale`` node multiplying ``src`` by ``coef`` (one per pair)."""
        if (src, coef) not in self._scales:
            shape = self.shapes[src]
            scale = self.nir.Scale(scale=np.full(shape, coef, dtype=np.float32))
            self._scales[(src, coef)] = next(iter(self.add(f"{src}_scale", scale, {src: 1.0}, shape)))
        return self._scales[(src, coef)]

    def conv(
        self, node: fx.Node, name: str, src: Sum, in_shape: tuple[int, ...], weight: np.ndarray,
        bias: np.ndarray | None, stride: Sequence[int], padding: Sequence[int],
        dilation: Sequence[int] | None = None, meta: dict | None = None,
        out: tuple[int, ...] | None = None,
    ) -> Sum:
        """A dense Conv1d / Conv2d node; checks that it computes the shape torch computed (``out``,
        default the node's)."""
        n = weight.ndim - 2
        dilation = dilation or (1,) * n
        bias = bias if bias is not None else np.zeros(weight.shape[0], dtype=weight.dtype)
        if n == 2 and weight.shape[2] != weight.shape[3]:
            weight, padding = self._square(node, weight, padding, dilation)
        if n == 1:
            layer = self.nir.Conv1d(
                input_shape=int(in_shape[1]), weight=weight, stride=int(stride[0]),
                padding=int(padding[0]), dilation=int(dilation[0]), groups=1, bias=bias,
                metadata=meta or {},
            )
        elif n == 2:
            layer = self.nir.Conv2d(
                input_shape=tuple(in_shape[1:]), weight=weight, stride=tuple(stride),
                padding=tuple(padding), dilation=tuple(dilation), groups=1, bias=bias,
                metadata=meta or {},
            )
        else:
            raise self.fail(node, f"NIR has 1-d and 2-d convolutions only, not {n}-d")
        out = out or self.shape(node)
        got = tuple(int(s) for s in layer.output_type["output"])
        if got != out:
            raise self.fail(node, f"the NIR convolution computes shape {got} where torch computes {out}")
        return self.add(name, layer, src, out)

    def _square(
        self, node: fx.Node, weight: np.ndarray, padding: Sequence[int], dilation: Sequence[int]
    ) -> tuple[np.ndarray, tuple[int, ...]]:
        """NIR 1.0.8 sizes a Conv2d's output from ``weight.shape[2]`` alone, so a ``kh x kw`` kernel
        is written ``K x K`` (``K = max``) with zero rows or columns on both sides and the padding
        grown by as much: the same windows, the same output."""
        k = max(weight.shape[2:])
        extra = [k - s for s in weight.shape[2:]]
        if any(e % 2 for e in extra):
            raise self.fail(node, f"a {weight.shape[2]}x{weight.shape[3]} kernel: NIR 1.0.8 reads a "
                                  "Conv2d's kernel as square, and this one cannot be padded evenly")
        weight = np.pad(weight, ((0, 0), (0, 0), *((e // 2, e // 2) for e in extra)))
        padding = tuple(int(p) + e // 2 * int(d) for p, e, d in zip(padding, extra, dilation))
        return weight, padding

    def select(
        self, node: fx.Node, name: str, src: Sum, in_shape: tuple[int, ...], pairs: list[tuple[int, int]],
        offset: Sequence[int] = (), stride: Sequence[int] = (), padding: Sequence[int] = (),
    ) -> Sum:
        """Copy input channel ``i`` to output channel ``o`` for each ``(o, i)`` in ``pairs``, taking
        every ``stride``-th element from ``offset`` on and padding with zeros: a conv of 0/1 weights
        (a ``Linear`` for vectors)."""
        c_out, n = self.shape(node)[0], len(in_shape) - 1
        kernel = tuple(o + 1 for o in offset) if offset else (1,) * n
        weight = np.zeros((c_out, in_shape[0], *kernel), dtype=np.float32)
        at = tuple(kernel[d] - 1 for d in range(n))
        for o, i in pairs:
            weight[(o, i, *at)] = 1.0
        meta = {"snncal_name": node.name}
        if n == 0:
            return self.add(name, self.nir.Linear(weight=weight, metadata=meta), src, self.shape(node))
        return self.conv(
            node, name, src, in_shape, weight, None, stride or (1,) * n, padding or (0,) * n, meta=meta
        )

    def channel_affine(
        self, node: fx.Node, name: str, src: Sum, scale: np.ndarray, shift: np.ndarray
    ) -> Sum:
        """``x * scale[c] + shift[c]`` per channel: a coefficient when it is ``s * x``, else a
        diagonal ``Affine`` (vectors) or a 1x1 conv with a diagonal weight."""
        shape = self.shape(node)
        if not shift.any() and np.all(scale == scale.flat[0]):
            return merge({}, src, float(scale.flat[0]))
        channels = shape[0]
        if len(shape) == 1:
            layer = self.nir.Affine(weight=np.diag(scale).astype(np.float32), bias=shift.astype(np.float32))
            return self.add(name, layer, src, shape)
        ones = (1,) * (len(shape) - 1)
        weight = np.diag(scale).astype(np.float32).reshape(channels, channels, *ones)
        return self.conv(node, name, src, shape, weight, shift.astype(np.float32), ones, (0,) * len(ones))

    def per_channel(self, node: fx.Node, constant: Any) -> np.ndarray:
        """A constant operand as one value per channel of ``node``'s value, or a clear error."""
        shape = self.shape(node)
        t = torch.as_tensor(self.values[constant] if isinstance(constant, fx.Node) else constant)
        try:
            full = torch.broadcast_to(t.detach().float().cpu(), (1, *shape))[0]
        except RuntimeError:
            raise self.fail(node, f"a constant of shape {tuple(t.shape)} does not broadcast to "
                                  f"one value per channel of {shape}") from None
        flat = full.reshape(shape[0], -1)
        if not torch.equal(flat, flat[:, :1].expand_as(flat)):
            raise self.fail(node, "a constant that varies along space has no NIR node (only per "
                                  "channel scales and shifts do)")
        return flat[:, 0].numpy().astype(np.float32)

    def graph(self) -> Any:
        """The NIR graph; nodes that reach no output (read only for their shape) are dropped."""
        while True:
            read = {src for src, _ in self.edges}
            dead = {k for k, n in self.nodes.items() if k not in read and not isinstance(n, self.nir.Output)}
            if not dead:
                break
            self.nodes = {k: n for k, n in self.nodes.items() if k not in dead}
            self.edges = [(a, b) for a, b in self.edges if b not in dead]
        meta = {
            "producer": "snncal",
            "T": int(self.snn.T),
            "input_encoding": ENCODING_NOTES[self.snn.encoding],
            "readout": READOUT.format(T=self.snn.T),
            "firing_rule": FIRING_RULE,
            "time_step": TIME_STEP,
        }
        return self.nir.NIRGraph(nodes=self.nodes, edges=self.edges, metadata=meta)
