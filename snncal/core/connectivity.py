"""Fan-out counting: how many connections each element of each spike source drives, and the MACs
of every conv/linear (see :mod:`snncal.core.stats` for the model these counts feed)."""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from snncal.core.engine import changes_over_time
from snncal.core.graph import SYNAPSES, ops
from snncal.core.neuron import is_neuron

__all__ = ["INPUT", "Connectivity", "WeightLayer", "connectivity"]

INPUT = "<input>"  # the network input, a spike source under Poisson encoding
_ANALOG = "<analog>"  # the output of a conv/linear: a current, not spikes

# the op table's rows, by what the cost model does with them
_CONV_FUNCS = ops.targets("conv", kind="function")
_BN = tuple(ops.targets("batchnorm", kind="module"))
_POOLS = {op.target: op.dims for op in ops.OPS if op.role == "avg_pool" and op.kind == "module"}
_POOL_FUNCS = {op.target: op.dims for op in ops.OPS if op.role == "avg_pool" and op.kind == "function"}
_ADAPTIVE = {op.target: op.dims for op in ops.OPS if op.role == "adaptive_pool" and op.kind == "module"}
_ADAPTIVE_FUNCS = {op.target: op.dims for op in ops.OPS
                   if op.role == "adaptive_pool" and op.kind == "function"}
_SCALE_FUNCS = ops.targets("mul", "div", kind="function")


@dataclass
class WeightLayer:
    """One conv/linear of the graph, per image: ``macs`` and ``outputs`` (elements written).

    ``event_driven``: its input is spikes only, so in the SNN it costs SOPs, not MACs. Otherwise it
    is dense, and costs its MACs at every step if ``temporal``, once per image if not.
    """

    name: str
    macs: int
    outputs: int
    event_driven: bool
    temporal: bool


@dataclass
class Connectivity:
    """``fanouts``: per spike source (neuron name, or :data:`INPUT`), the fan-out of each element
    ``[C, ...]``; ``layers``: the graph's conv/linears in order."""

    fanouts: dict[str, Tensor]
    layers: list[WeightLayer]


def _is_weight_layer(gm: fx.GraphModule, n: fx.Node) -> bool:
    if n.op == "call_module":
        return isinstance(gm.get_submodule(n.target), SYNAPSES)
    return n.op == "call_function" and (n.target in _CONV_FUNCS or n.target is F.linear)


def _sources(gm: fx.GraphModule) -> dict[fx.Node, frozenset[str]]:
    """Per node, the sources its value is a linear function of (neurons, :data:`INPUT`, or the
    output of a conv/linear)."""
    sources: dict[fx.Node, frozenset[str]] = {}
    for n in gm.graph.nodes:
        if n.op == "placeholder":
            src = {INPUT}
        elif is_neuron(gm, n):
            src = {n.target}
        elif _is_weight_layer(gm, n):
            src = {_ANALOG}
        else:
            src = set().union(*(sources[a] for a in n.all_input_nodes))
        sources[n] = frozenset(src)
    return sources


def _sum_pool(x: Tensor, dims: int, kernel, stride, padding, ceil_mode: bool) -> Tensor:
    """The sum over each window of an average pool (the pool with weights 1)."""
    k, p = nn.modules.utils._ntuple(dims)(kernel), nn.modules.utils._ntuple(dims)(padding)
    s = nn.modules.utils._ntuple(dims)(stride) if stride else k
    if dims == 1:
        return _sum_pool(x.unsqueeze(-2), 2, (1, *k), (1, *s), (0, *p), ceil_mode).squeeze(-2)
    pool = F.avg_pool2d if dims == 2 else F.avg_pool3d
    return pool(x, k, s, p, ceil_mode, True, 1)


def _sum_adaptive(x: Tensor, dims: int, output_size) -> Tensor:
    """The sum over each window of an adaptive average pool: the mean times the window's size."""
    y = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}[dims](
        x, output_size)
    for i, (n_in, n_out) in enumerate(zip(x.shape[-dims:], y.shape[-dims:])):
        size = [math.ceil((j + 1) * n_in / n_out) - (j * n_in) // n_out for j in range(n_out)]
        shape = [n_out if d == i else 1 for d in range(dims)]
        y = y * torch.tensor(size, dtype=y.dtype, device=y.device).view(shape)
    return y


class _Ones(fx.Interpreter):
    """Runs the graph on one image with unit weights, sum pools and neuron outputs as leaves, and
    adds every consumer's output to ``loss`` (see :func:`connectivity`)."""

    def __init__(self, gm: fx.GraphModule, sources: dict, temporal: set, spike_sources: set) -> None:
        super().__init__(gm)
        self.sources, self.temporal, self.spike_sources = sources, temporal, spike_sources
        self.loss: Tensor | float = 0.0
        self.leaves: dict[str, Tensor] = {}
        self.layers: list[WeightLayer] = []

    def _consume(self, x) -> None:
        if isinstance(x, Tensor) and x.requires_grad:
            self.loss = self.loss + x.sum()

    def run_node(self, n: fx.Node):
        if n.op == "placeholder":
            self.leaves[INPUT] = out = super().run_node(n)
            return out
        if is_neuron(self.module, n):
            x = self.env[n.args[0]]
            self._consume(x)  # an identity synapse: the spike goes into the potential
            self.leaves[n.target] = out = torch.ones_like(x, requires_grad=True)
            return out
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        if n.op == "output":
            self._consume(args[0])
            return args[0]
        out = self._unit(n, args, kwargs)
        if _is_weight_layer(self.module, n):
            out = self._weight_layer(n, args, kwargs, out)
        return out

    def _weight_layer(self, n: fx.Node, args: tuple, kwargs: dict, out: Tensor) -> Tensor:
        weight = (self.module.get_submodule(n.target).weight if n.op == "call_module"
                  else ops.argument(args, kwargs, 1, "weight"))
        reads = set().union(*(self.sources[a] for a in n.all_input_nodes))
        event = bool(reads) and reads <= self.spike_sources
        outputs = out.numel() // out.shape[0]
        self.layers.append(WeightLayer(n.target if n.op == "call_module" else n.name,
                                       outputs * weight[0].numel(), outputs, event, n in self.temporal))
        if event:
            self._consume(out)
        return out.detach()

    def _unit(self, n: fx.Node, args: tuple, kwargs: dict):
        """The node's op with unit weights: the count of paths through it."""
        if n.op == "call_function" and not any(isinstance(a, Tensor) for a in (*args, *kwargs.values())):
            return self.call_function(n.target, args, kwargs)  # arithmetic on sizes, as it is
        if n.op == "call_module":
            return self._unit_module(self.submodules[n.target], args, kwargs)
        if n.op == "call_function":
            f = n.target
            if f in _CONV_FUNCS or f is F.linear:
                ones = torch.ones_like(ops.argument(args, kwargs, 1, "weight"), dtype=args[0].dtype)
                kwargs = {k: v for k, v in kwargs.items() if k not in ("weight", "bias")}
                return f(args[0], ones, None, *args[3:], **kwargs)
            if f in _POOL_FUNCS:
                arg = functools.partial(ops.argument, args, kwargs)
                return _sum_pool(args[0], _POOL_FUNCS[f], arg(1, "kernel_size"), arg(2, "stride"),
                                 arg(3, "padding", 0), arg(4, "ceil_mode", False))
            if f in _ADAPTIVE_FUNCS:
                size = ops.argument(args, kwargs, 1, "output_size")
                return _sum_adaptive(args[0], _ADAPTIVE_FUNCS[f], size)
            if f is operator.neg:
                return args[0]
            if f in _SCALE_FUNCS:
                args = self._unit_factors(n, args)
            f = {operator.sub: operator.add, torch.sub: torch.add, torch.mean: torch.sum}.get(f, f)
            return f(*args, **kwargs)
        if n.op == "call_method":
            if n.target == "float":  # keep float64
                return args[0]
            if n.target in ("mul", "div"):
                args = self._unit_factors(n, args)
            method = {"sub": "add", "mean": "sum"}.get(n.target, n.target)
            return getattr(args[0], method)(*args[1:], **kwargs)
        return getattr(self, n.op)(n.target, args, kwargs)

    def _unit_module(self, mod: nn.Module, args: tuple, kwargs: dict):
        x = args[0]
        if isinstance(mod, SYNAPSES) and not isinstance(mod, nn.Linear):
            return mod._conv_forward(x, torch.ones_like(mod.weight, dtype=x.dtype), None)
        if isinstance(mod, nn.Linear):
            return F.linear(x, torch.ones_like(mod.weight, dtype=x.dtype))
        if isinstance(mod, _BN):
            return x
        if type(mod) in _POOLS:
            return _sum_pool(x, _POOLS[type(mod)], mod.kernel_size, mod.stride, mod.padding, mod.ceil_mode)
        if type(mod) in _ADAPTIVE:
            return _sum_adaptive(x, _ADAPTIVE[type(mod)], mod.output_size)
        return mod(*args, **kwargs)

    def _unit_factors(self, n: fx.Node, args: tuple) -> tuple:
        """``a * c`` or ``a / c`` with the constant factor ``c`` set to 1."""
        out = []
        for node, value in zip(n.args, args):
            if isinstance(value, (int, float)):
                value = 1
            elif isinstance(value, Tensor) and not (isinstance(node, fx.Node) and self.sources[node]):
                value = torch.ones_like(value)
            out.append(value)
        return tuple(out)


def connectivity(gm: fx.GraphModule, example: Tensor, encoding: str = "direct") -> Connectivity:
    """Fan-out of every element of every spike source, and the MACs of every conv/linear.

    Args:
        gm: a converted graph (its activations are :class:`IFNeuron` modules).
        example: one input ``[1, ...]`` (only its shape matters).
        encoding: ``"direct"`` (the input is a current) or ``"poisson"`` (the input is spikes).
    """
    sources, temporal = _sources(gm), changes_over_time(gm, encoding)
    spike_sources = {n.target for n in gm.graph.nodes if is_neuron(gm, n)}
    if encoding != "direct":
        spike_sources.add(INPUT)
    ones = _Ones(gm, sources, temporal, spike_sources)
    with torch.enable_grad():
        ones.run(torch.ones(example[:1].shape, dtype=torch.float64, device=example.device,
                            requires_grad=True))
        leaves = [ones.leaves[s] for s in spike_sources]
        loss = ones.loss if isinstance(ones.loss, Tensor) else torch.zeros((), requires_grad=True)
        grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    fanouts = {
        s: (torch.zeros_like(leaf) if g is None else g.round())[0].detach()
        for s, leaf, g in zip(spike_sources, leaves, grads)
    }
    return Connectivity(fanouts, ones.layers)
