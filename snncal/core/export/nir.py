"""Export a converted spiking network to NIR, the Neuromorphic Intermediate Representation.

:func:`export_nir` walks the SNN's fx graph once, in order, and gives every op its NIR twin
(docs/interop.md has the full table). Each fx value becomes a weighted sum of NIR node outputs
(``_Sum``, NIR node name -> coefficient): NIR sums every edge that enters a node, so a residual
``a + b`` needs no node of its own, its reader gets one edge from each term; a coefficient other
than 1 becomes a ``Scale`` node on that edge. NIR has no concatenation, slicing or padding node:
each is a 1x1 (or offset, strided) convolution whose weight is 0 or 1, which copies values exactly.

NIR 1.0.8 infers a grouped convolution's input as ``weight.shape[1]`` channels, so a graph with
``groups > 1`` fails ``nir.read``'s type check; grouped convolutions (depthwise convs from average
pools, MobileNet) are written dense, block-diagonal with zeros, with ``metadata["snncal_groups"]``.
It also sizes a Conv2d's output from ``weight.shape[2]`` alone, so a non-square kernel is written
square, padded with zeros on both sides (:meth:`_Export._square`).

Semantics NIR's IF node cannot hold (reset by subtraction, initial potentials ``v0``, the firing rule
``v >= Vth``, the threshold shift) go into each IF node's ``metadata``, and one warning per export
says what a consumer that follows NIR's IF model will get wrong.
"""

from __future__ import annotations

import io
import math
import operator
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from snncal.core.engine import SpikingNetwork
from snncal.core.files import atomic_write_bytes
from snncal.core.graph.trace import ConversionError, node_location
from snncal.core.neuron import IFNeuron

if TYPE_CHECKING:
    import nir

__all__ = [
    "export_nir",
]

_Sum = dict[str, float]  # NIR node name -> coefficient; the value is sum(coef * output(name))
_BATCH = 2  # example batch of the shape propagation: tells the batch dimension from a size-1 one

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


# ----------------------------------------------------------------------------- public entry point
def export_nir(
    snn: SpikingNetwork,
    path: str | Path | None = None,
    input_shape: Sequence[int] | None = None,
) -> nir.NIRGraph:
    """The NIR graph of ``snn``; also written to ``path`` (HDF5, atomically) when it is given.

    Args:
        snn: a converted network.
        path: file to write with ``nir.write``, e.g. ``"net.nir"``.
        input_shape: one input without the batch dimension, e.g. ``[3, 32, 32]``; default: the
            shape recorded in the graph at conversion (``node.meta["tensor_meta"]``).

    Returns:
        The ``nir.NIRGraph``: ``Input`` -> ... -> ``Output``, each neuron an ``IF`` node followed by
        a ``Scale`` node (spikes of height ``Vth``), snncal's neuron semantics in each IF node's
        ``metadata``. ``nir.read`` reads the file back with its type check on.

    Warns:
        UserWarning: once per export, what a consumer that follows NIR's IF model gets wrong for
            this network (reset by subtraction, initial potentials, threshold shift, ``v >= Vth``).

    Raises:
        ConversionError: an op NIR cannot express (one message naming the node, op and a way out).
        ValueError: no input shape was given and the graph does not record one.
    """
    import nir  # lazily: the rest of snncal works without it

    gm = snn.graph
    values, dynamic = _propagate(gm, _input_shape(gm, input_shape))
    export = _Export(nir, snn, values, dynamic)
    for node in gm.graph.nodes:
        export.visit(node)
    graph = export.graph()
    warnings.warn(_semantics_warning(snn), stacklevel=2)
    if path is not None:
        buffer = io.BytesIO()
        nir.write(buffer, graph)
        atomic_write_bytes(path, buffer.getvalue())
    return graph


def _semantics_warning(snn: SpikingNetwork) -> str:
    """What a consumer that follows NIR's IF model gets wrong when it runs ``snn``'s export."""
    neurons = list(snn.neurons().values())
    subtract = sum(n.reset == "subtract" for n in neurons)
    v0 = sum(bool(n.v0.ne(0).any()) for n in neurons)
    shift = sum(n.shift for n in neurons)
    stepped = sum(n.step_bias is not None for n in neurons)
    wrong = []
    if subtract:
        wrong.append(
            f"{subtract} of {len(neurons)} IF neurons reset by subtraction (v -= v_threshold), but "
            "NIR's IF resets to v_reset = 0, which drops the charge above threshold and lowers "
            "firing rates: a consumer that resets to zero will not reproduce this network"
        )
    if v0:
        wrong.append(
            f"{v0} IF neurons start from non-zero initial potentials (potential correction), for "
            "which NIR's IF has no field: a consumer starts them at 0 (the values are in each IF "
            "node's metadata['v0'])"
        )
    if shift:
        wrong.append(
            f"{shift} IF neurons add the threshold shift v_threshold / (2T) to their input at every "
            "step, which NIR does not express (metadata['bias_current'])"
        )
    if stepped:
        wrong.append(
            f"{stepped} IF neurons add a time-dependent bias (one current per step and channel), "
            "which NIR does not express (metadata['step_bias'], [steps, channels])"
        )
    wrong.append(
        f"snncal's neurons {FIRING_RULE}, in discrete steps (dt = 1, r = 1: charge, fire, reset) "
        f"with input encoding {ENCODING_NOTES[snn.encoding]}; {READOUT.format(T=snn.T)}"
    )
    return "NIR export: " + "; ".join(wrong) + ". See the IF nodes' metadata and docs/interop.md."


# ----------------------------------------------------------------------------- shape propagation
def _input_shape(gm: fx.GraphModule, input_shape: Sequence[int] | None) -> tuple[int, ...]:
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ConversionError(f"NIR export needs a network with one input, not {len(placeholders)}")
    if input_shape is not None:
        return tuple(int(s) for s in input_shape)
    meta = placeholders[0].meta.get("tensor_meta")
    if meta is None:
        raise ValueError(
            "the graph records no input shape: pass input_shape (one input without the batch "
            "dimension, e.g. [3, 32, 32]) to export_nir"
        )
    return tuple(int(s) for s in meta.shape[1:])


class _Propagate(fx.Interpreter):
    """Runs the graph on an example, keeping every value; a neuron passes its input through."""

    def call_module(self, target: str, args: tuple, kwargs: dict) -> Any:
        if isinstance(self.submodules[target], IFNeuron):
            return args[0]
        return super().call_module(target, args, kwargs)


def _propagate(gm: fx.GraphModule, shape: tuple[int, ...]) -> tuple[dict[fx.Node, Any], set[fx.Node]]:
    """Every node's value on a zero input of batch ``_BATCH``, and the nodes that depend on it."""
    ref = next((t for t in [*gm.parameters(), *gm.buffers()] if t.is_floating_point()), None)
    example = torch.zeros(
        _BATCH, *shape, dtype=ref.dtype if ref is not None else torch.float32,
        device=ref.device if ref is not None else "cpu",
    )
    interp = _Propagate(gm, garbage_collect_values=False)
    with torch.no_grad():
        interp.run(example)
    dynamic: set[fx.Node] = set()
    for node in gm.graph.nodes:
        if node.op == "placeholder" or any(a in dynamic for a in node.all_input_nodes):
            dynamic.add(node)
    return dict(interp.env), dynamic


# ----------------------------------------------------------------------------- helpers
def _np(t: Tensor | float, dtype=np.float32) -> np.ndarray:
    if isinstance(t, Tensor):
        return t.detach().cpu().numpy().astype(dtype)
    return np.asarray(t, dtype=dtype)


def _broadcast(t: Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """A scalar, per-channel or element-wise buffer as an array of ``shape``."""
    return np.ascontiguousarray(np.broadcast_to(_np(t), shape))


def _merge(a: _Sum, b: _Sum, scale: float = 1.0) -> _Sum:
    """``a + scale * b`` as one sum; terms that cancel drop out."""
    out = dict(a)
    for name, coef in b.items():
        out[name] = out.get(name, 0.0) + scale * coef
    return {k: v for k, v in out.items() if v != 0}


def _tuple(v: int | Sequence[int], n: int) -> tuple[int, ...]:
    return tuple(int(x) for x in v) if isinstance(v, (tuple, list)) else (int(v),) * n


def _arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _describe(gm: fx.GraphModule, node: fx.Node) -> str:
    if node.op == "call_module":
        return f"module {type(gm.get_submodule(node.target)).__name__}"
    if node.op == "call_method":
        return f"method .{node.target}()"
    return f"function {getattr(node.target, '__name__', node.target)}"


def _dense_groups(weight: np.ndarray, groups: int) -> np.ndarray:
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
class _Export:
    """One export: the NIR nodes and edges so far, and every fx value as a sum of NIR outputs."""

    def __init__(
        self, nir_mod: Any, snn: SpikingNetwork, values: dict[fx.Node, Any], dynamic: set[fx.Node]
    ) -> None:
        self.nir, self.snn, self.gm = nir_mod, snn, snn.graph
        self.values, self.dynamic = values, dynamic
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []
        self.shapes: dict[str, tuple[int, ...]] = {}  # NIR node name -> output shape
        self.sums: dict[fx.Node, _Sum] = {}
        self._scales: dict[tuple[str, float], str] = {}

    # -- errors, shapes, sources
    def fail(self, node: fx.Node, reason: str) -> ConversionError:
        return ConversionError(
            f"cannot export node '{node.name}' ({_describe(self.gm, node)}) at "
            f"{node_location(node)} to NIR: {reason}"
        )

    def shape(self, node: fx.Node) -> tuple[int, ...]:
        """Shape of a node's value without the batch dimension."""
        return tuple(self.values[node].shape[1:])

    def is_spiking(self, arg: Any) -> bool:
        """True for a value computed from the network's input (the others are constants)."""
        return isinstance(arg, fx.Node) and arg in self.sums

    def source(self, node: fx.Node, index: int = 0) -> _Sum:
        arg = node.args[index] if len(node.args) > index else None
        if not self.is_spiking(arg):
            raise self.fail(node, f"its input {arg!r} is not computed from the network's input")
        return self.sums[arg]

    def module(self, node: fx.Node) -> nn.Module:
        return self.gm.get_submodule(node.target)

    # -- building
    def add(self, name: str, nir_node: Any, inputs: _Sum, shape: tuple[int, ...]) -> _Sum:
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
        self, node: fx.Node, name: str, src: _Sum, in_shape: tuple[int, ...], weight: np.ndarray,
        bias: np.ndarray | None, stride: Sequence[int], padding: Sequence[int],
        dilation: Sequence[int] | None = None, meta: dict | None = None,
        out: tuple[int, ...] | None = None,
    ) -> _Sum:
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
        self, node: fx.Node, name: str, src: _Sum, in_shape: tuple[int, ...], pairs: list[tuple[int, int]],
        offset: Sequence[int] = (), stride: Sequence[int] = (), padding: Sequence[int] = (),
    ) -> _Sum:
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
        self, node: fx.Node, name: str, src: _Sum, scale: np.ndarray, shift: np.ndarray
    ) -> _Sum:
        """``x * scale[c] + shift[c]`` per channel: a coefficient when it is ``s * x``, else a
        diagonal ``Affine`` (vectors) or a 1x1 conv with a diagonal weight."""
        shape = self.shape(node)
        if not shift.any() and np.all(scale == scale.flat[0]):
            return _merge({}, src, float(scale.flat[0]))
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

    # -- the walk
    def visit(self, node: fx.Node) -> None:
        if node.op == "placeholder":
            shape = self.shape(node)
            self.sums[node] = self.add("input", self.nir.Input(input_type=np.array(shape)), {}, shape)
        elif node.op == "output":
            out = node.args[0]
            if not self.is_spiking(out):
                raise self.fail(node, "the network must return one tensor computed from its input")
            shape = self.shape(out)
            self.add("output", self.nir.Output(output_type=np.array(shape)), self.sums[out], shape)
        elif node in self.dynamic and node.op != "get_attr":
            value = self.values[node]
            if not isinstance(value, Tensor):
                if isinstance(value, (tuple, list)) and any(isinstance(v, Tensor) for v in value):
                    raise self.fail(node, "it returns several tensors; NIR values are single tensors")
                return  # a size or shape: read by reshapes, not a NIR value
            if value.dim() == 0 or value.shape[0] != _BATCH:
                raise self.fail(node, "its value does not keep the batch as its first dimension")
            exporter = self._exporter(node)
            if exporter is None:
                raise self.fail(node, _UNSUPPORTED)
            self.sums[node] = exporter(self, node)

    def _exporter(self, node: fx.Node) -> Callable[[_Export, fx.Node], _Sum] | None:
        if node.op == "call_module":
            mod = self.module(node)
            return next((fn for types, fn in _MODULES if isinstance(mod, types)), None)
        if node.op == "call_function":
            return _FUNCTIONS.get(node.target)
        if node.op == "call_method":
            return _METHODS.get(node.target)
        return None

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


_UNSUPPORTED = (
    "NIR export handles conv, linear, average pooling, flatten, batch norm, residual sums, channel "
    "concatenation, slicing, zero padding and per-channel constants; build the ANN from those ops, "
    "or keep the network in snncal's own checkpoint format (save_snn)"
)


# ----------------------------------------------------------------------------- exporters: neurons, layers
def _neuron(ex: _Export, node: fx.Node) -> _Sum:
    """``IFNeuron`` -> ``IF`` (r = 1, v_reset = 0) -> ``Scale`` (spikes of height Vth)."""
    neuron: IFNeuron = ex.module(node)
    shape, T = ex.shape(node), ex.snn.T
    vth = _broadcast(neuron.threshold, shape)
    bias = neuron.shift_current(T)
    meta = {
        "snncal_name": node.target,
        "reset": neuron.reset,
        "reset_rule": RESET_RULES[neuron.reset],
        "v0": _broadcast(neuron.v0, shape),
        "firing_rule": FIRING_RULE,
        "time_step": TIME_STEP,
        "bias_current": _broadcast(bias, shape),
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


def _conv_padding(ex: _Export, node: fx.Node, conv: nn.Module) -> tuple[int, ...]:
    n = conv.weight.dim() - 2
    if not isinstance(conv.padding, str):
        return _tuple(conv.padding, n)
    if conv.padding == "valid":
        return (0,) * n
    total = [d * (k - 1) for d, k in zip(_tuple(conv.dilation, n), conv.weight.shape[2:])]
    if any(t % 2 for t in total):
        raise ex.fail(node, "padding='same' with an even kernel pads unequally; NIR pads both sides alike")
    return tuple(t // 2 for t in total)


def _conv(ex: _Export, node: fx.Node) -> _Sum:
    """Conv1d / Conv2d -> NIR Conv1d / Conv2d (grouped ones dense)."""
    conv = ex.module(node)
    if conv.padding_mode != "zeros":
        raise ex.fail(node, f"padding_mode={conv.padding_mode!r}; NIR convolutions pad with zeros")
    n = conv.weight.dim() - 2
    weight = _dense_groups(_np(conv.weight), conv.groups)
    bias = _np(conv.bias) if conv.bias is not None else None
    meta = {"snncal_name": node.target, "snncal_groups": int(conv.groups)}
    return ex.conv(node, node.target, ex.source(node), ex.shape(node.args[0]), weight, bias,
                   _tuple(conv.stride, n), _conv_padding(ex, node, conv), _tuple(conv.dilation, n), meta)


def _linear(ex: _Export, node: fx.Node) -> _Sum:
    """Linear -> Affine (Linear without bias)."""
    lin = ex.module(node)
    if len(ex.shape(node.args[0])) != 1:
        raise ex.fail(node, "NIR's Affine maps vectors: flatten the input first")
    meta = {"snncal_name": node.target}
    if lin.bias is None:
        layer = ex.nir.Linear(weight=_np(lin.weight), metadata=meta)
    else:
        layer = ex.nir.Affine(weight=_np(lin.weight), bias=_np(lin.bias), metadata=meta)
    return ex.add(node.target, layer, ex.source(node), ex.shape(node))


def _batchnorm(ex: _Export, node: fx.Node) -> _Sum:
    """A BatchNorm left unfolded: per-channel ``x * scale + shift`` (eval statistics)."""
    bn = ex.module(node)
    if bn.running_mean is None:
        raise ex.fail(node, "a BatchNorm without running statistics depends on the batch")
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale + (bn.bias if bn.bias is not None else 0)
    return ex.channel_affine(node, node.target, ex.source(node), _np(scale), _np(shift))


# ----------------------------------------------------------------------------- exporters: pooling
def _pool_args(ex: _Export, node: fx.Node, n: int) -> tuple[tuple, tuple, tuple, bool, bool, Any]:
    """``(kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)``."""
    if node.op == "call_module":
        m = ex.module(node)
        k, s, p, ceil, include = m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad
        div = getattr(m, "divisor_override", None)
    else:
        k, s, p = _arg(node, 1, "kernel_size"), _arg(node, 2, "stride"), _arg(node, 3, "padding", 0)
        ceil, include = _arg(node, 4, "ceil_mode", False), _arg(node, 5, "count_include_pad", True)
        div = _arg(node, 6, "divisor_override")
    k = _tuple(k, n)
    return k, _tuple(s, n) if s else k, _tuple(p, n), bool(ceil), bool(include), div


def _pool(
    ex: _Export, node: fx.Node, kernel: tuple, stride: tuple, padding: tuple, divisor: int,
    out: tuple[int, ...] | None = None,
) -> _Sum:
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
    return pooled if scale is None else _merge({}, pooled, scale)


def _avg_pool(ex: _Export, node: fx.Node) -> _Sum:
    """AvgPool1d / AvgPool2d (module or function)."""
    n = len(ex.shape(node)) - 1
    kernel, stride, padding, _, include, div = _pool_args(ex, node, n)
    if not include and any(padding):
        raise ex.fail(node, "count_include_pad=False averages fewer inputs at the border; no NIR "
                            "pool does that: use count_include_pad=True")
    return _pool(ex, node, kernel, stride, padding, int(div) if div else math.prod(kernel))


def _adaptive_pool(ex: _Export, node: fx.Node) -> _Sum:
    """AdaptiveAvgPool1d / 2d whose windows tile the input: an average pool of fixed window."""
    in_size, out_size = ex.shape(node.args[0])[1:], ex.shape(node)[1:]
    if any(i % o for i, o in zip(in_size, out_size)):
        raise ex.fail(node, f"adaptive pooling {in_size} -> {out_size}: its windows do not tile the "
                            "input, which no NIR pool computes")
    kernel = tuple(i // o for i, o in zip(in_size, out_size))
    return _pool(ex, node, kernel, kernel, (0,) * len(kernel), math.prod(kernel))


def _mean(ex: _Export, node: fx.Node) -> _Sum:
    """``x.mean((2, 3))`` (all spatial dims, a global average pool): a pool, then Flatten unless
    ``keepdim``."""
    in_shape = ex.shape(node.args[0])
    rank, dims = len(in_shape) + 1, _arg(node, 1, "dim")
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
def _identity(ex: _Export, node: fx.Node) -> _Sum:
    return ex.source(node)


def _reshape(ex: _Export, node: fx.Node) -> _Sum:
    """view / reshape / flatten / squeeze: the identity, or Flatten to ``[N, -1]``."""
    in_shape, out = ex.shape(node.args[0]), ex.shape(node)
    if out == in_shape:
        return ex.source(node)
    if out != (math.prod(in_shape),):
        raise ex.fail(node, f"reshape {in_shape} -> {out}: NIR can only flatten all but the batch dimension")
    layer = ex.nir.Flatten(input_type=np.array(in_shape), start_dim=0, end_dim=-1)
    return ex.add(node.name, layer, ex.source(node), out)


def _cat(ex: _Export, node: fx.Node) -> _Sum:
    """torch.cat on channels: each input copied into its channels by a 0/1 conv, edges summed."""
    tensors, dim = node.args[0], _arg(node, 1, "dim", 0)
    out = ex.shape(node)
    if dim % (len(out) + 1) != 1:
        raise ex.fail(node, f"concatenation along dim {dim}: NIR export concatenates channels (dim 1) only")
    total, offset = {}, 0
    for i, t in enumerate(tensors):
        if not ex.is_spiking(t):
            raise ex.fail(node, f"input {i} is a constant, not computed from the network's input")
        in_shape = ex.shape(t)
        pairs = [(offset + c, c) for c in range(in_shape[0])]
        total = _merge(total, ex.select(node, f"{node.name}_{i}", ex.sums[t], in_shape, pairs))
        offset += in_shape[0]
    return total


def _getitem(ex: _Export, node: fx.Node) -> _Sum:
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


def _pad(ex: _Export, node: fx.Node) -> _Sum:
    """Zero padding (F.pad, ZeroPad2d, ConstantPad with 0): channels placed by a 0/1 conv, equal
    spatial padding as the conv's padding."""
    if node.op == "call_module":
        m = ex.module(node)
        pad, mode, value = _tuple(m.padding, 1), "constant", getattr(m, "value", 0)
    else:
        pad, mode, value = node.args[1], _arg(node, 2, "mode", "constant"), _arg(node, 3, "value")
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
def _operands(ex: _Export, node: fx.Node) -> tuple[Any, Any]:
    if node.kwargs or len(node.args) != 2:
        raise ex.fail(node, "only two-operand arithmetic without keyword arguments exports")
    return node.args


def _add_sub(ex: _Export, node: fx.Node, sign: float) -> _Sum:
    """``a + b`` / ``a - b``: two spiking values sum their terms; a constant is a per-channel shift."""
    a, b = _operands(ex, node)
    if ex.is_spiking(a) and ex.is_spiking(b):
        if ex.shape(a) != ex.shape(b):
            raise ex.fail(node, f"a broadcasting sum {ex.shape(a)} + {ex.shape(b)}; NIR sums equal shapes")
        return _merge(ex.sums[a], ex.sums[b], sign)
    x, const, x_sign = (a, b, 1.0) if ex.is_spiking(a) else (b, a, sign)
    if ex.shape(x) != ex.shape(node):
        raise ex.fail(node, "a constant that broadcasts the value to a larger shape")
    shift = ex.per_channel(node, const) * (sign if x is a else 1.0)
    scale = np.full(ex.shape(node)[0], x_sign, dtype=np.float32)
    return ex.channel_affine(node, node.name, ex.sums[x], scale, shift)


def _add(ex: _Export, node: fx.Node) -> _Sum:
    return _add_sub(ex, node, 1.0)


def _sub(ex: _Export, node: fx.Node) -> _Sum:
    return _add_sub(ex, node, -1.0)


def _mul_div(ex: _Export, node: fx.Node, divide: bool) -> _Sum:
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


def _mul(ex: _Export, node: fx.Node) -> _Sum:
    return _mul_div(ex, node, divide=False)


def _div(ex: _Export, node: fx.Node) -> _Sum:
    return _mul_div(ex, node, divide=True)


def _neg(ex: _Export, node: fx.Node) -> _Sum:
    return _merge({}, ex.source(node), -1.0)


# ----------------------------------------------------------------------------- dispatch tables
_MODULES: list[tuple[type | tuple[type, ...], Callable[[_Export, fx.Node], _Sum]]] = [
    (IFNeuron, _neuron),
    ((nn.Conv1d, nn.Conv2d), _conv),
    (nn.Linear, _linear),
    ((nn.BatchNorm1d, nn.BatchNorm2d), _batchnorm),
    ((nn.AvgPool1d, nn.AvgPool2d), _avg_pool),
    ((nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d), _adaptive_pool),
    ((nn.Flatten, nn.Unflatten), _reshape),
    ((nn.Identity, nn.modules.dropout._DropoutNd), _identity),
    ((nn.ZeroPad1d, nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d), _pad),
]
_FUNCTIONS: dict[Any, Callable[[_Export, fx.Node], _Sum]] = {
    operator.add: _add, torch.add: _add, operator.sub: _sub, torch.sub: _sub,
    operator.mul: _mul, torch.mul: _mul, operator.truediv: _div, torch.div: _div, operator.neg: _neg,
    torch.cat: _cat, operator.getitem: _getitem, F.pad: _pad,
    torch.flatten: _reshape, torch.reshape: _reshape, torch.squeeze: _reshape, torch.unsqueeze: _reshape,
    F.avg_pool1d: _avg_pool, F.avg_pool2d: _avg_pool,
    F.adaptive_avg_pool1d: _adaptive_pool, F.adaptive_avg_pool2d: _adaptive_pool, torch.mean: _mean,
}
_METHODS: dict[str, Callable[[_Export, fx.Node], _Sum]] = {
    "view": _reshape, "reshape": _reshape, "flatten": _reshape, "squeeze": _reshape,
    "unsqueeze": _reshape, "contiguous": _identity, "clone": _identity, "float": _identity,
    "add": _add, "add_": _add, "sub": _sub, "mul": _mul, "div": _div, "neg": _neg,
    "mean": _mean,
}
