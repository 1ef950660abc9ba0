"""Threshold folding: the same spiking network with every threshold 1 and spikes of height 1.

An IF neuron with threshold ``Vth`` (per channel ``c``) driven by a current ``I`` spikes exactly when
the neuron with threshold 1 driven by ``I / Vth`` does, if its initial potential and bias currents
are divided by ``Vth`` too; its spikes of height ``Vth`` are unit spikes times ``Vth``. So the
network is unchanged when each neuron's input current is divided by its threshold and each reader
of its spikes multiplies its input columns by it::

    before:  conv1(W1, b1) -> IF(Vth) -> spikes * Vth -> conv2(W2)
    after:   conv1(W1 / Vth[out], b1 / Vth) -> IF(1) -> unit spikes -> conv2(W2 * Vth[in])

:func:`fold_thresholds` walks the graph once and gives every value a per-channel *scale* ``s``:
the folded graph computes ``value / s``. A neuron's output has scale ``Vth``; the network's input
and output have scale 1. A conv or linear layer absorbs its input's scale into its columns, and the
scale its reader wants into its rows (it is *free* until a reader asks). Linear ops that keep
channels (average pools, spatial means, Identity, a scalar factor) pass the scale through; flatten
repeats it per position, ``cat`` concatenates it, slicing and padding select it. Where two scales
meet that no layer can absorb (an identity shortcut into a residual add whose other branch feeds a
neuron of another threshold), a 1x1 depthwise convolution (a diagonal ``Linear`` for vectors) carries
the ratio, since every NIR consumer runs convolutions. Any other op gets its inputs at scale 1.

The threshold shift ``Vth / 2T`` is a constant current: it is moved into the bias of the layer that
feeds the neuron, when there is one. A time-dependent bias (``step_bias``) and the initial potential
``v0`` are divided by ``Vth`` and stay on the neuron (NIR has no field for them). With ``static``,
for consumers that run only constant biases, the time-dependent bias ``b_t`` is replaced by a line
fitted to its running sum ``C_t = b_1 + ... + b_t``: ``C_t ~ a + c t`` by least squares over the
``T`` steps, with ``C_T`` kept (the same charge by the last step); ``a`` joins the initial potential
and ``c`` the bias of the layer that feeds the neuron. Time-bias correction's biases are a kick in
the first steps and then about constant, so the line is close (``benchmarks/peers.py`` measures it).

In exact arithmetic the folded network computes the same function; in float32 the currents round
differently, so a neuron whose potential lands within rounding of its threshold may fire one step
apart (the tests measure how rarely).
"""

from __future__ import annotations

import copy
import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from snncal.core.engine import SpikingNetwork
from snncal.core.graph.trace import ConversionError, node_location
from snncal.core.neuron import IFNeuron

__all__ = ["fold_thresholds", "is_folded"]

_SYNAPSE = (nn.Conv1d, nn.Conv2d, nn.Linear)
_PASS_MODULES = (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.Identity,
                 nn.modules.dropout._DropoutNd)
_PASS_FUNCTIONS = {F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, torch.mean,
                   operator.neg}
_PASS_METHODS = {"contiguous", "clone", "float", "mean", "neg"}
_SCALARS = {operator.mul, torch.mul, operator.truediv, torch.div}
_SUMS = {operator.add, torch.add, operator.sub, torch.sub}
_RESHAPES_F = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}
_RESHAPES_M = {"view", "reshape", "flatten", "squeeze", "unsqueeze"}


def is_folded(snn: SpikingNetwork) -> bool:
    """Whether every neuron of ``snn`` has threshold 1."""
    return all(bool(n.threshold.eq(1).all()) for n in snn.neurons().values())


def fold_thresholds(
    snn: SpikingNetwork, input_shape: tuple[int, ...], static: bool = False
) -> SpikingNetwork:
    """A copy of ``snn`` whose neurons have threshold 1 (spikes of height 1); see the module doc.

    Args:
        snn: a converted network (left unchanged).
        input_shape: one input without the batch dimension, e.g. ``(3, 32, 32)``.
        static: replace each time-dependent bias by an initial potential and a constant current
            in the bias of the layer that feeds the neuron (for consumers without a per-step bias).

    Returns:
        The folded network, for simulation and export only: its ``ann()`` view no longer holds the
        ANN's activations, and a threshold shift moved into a bias assumes ``snn.T`` steps.

    Raises:
        ConversionError: a neuron whose threshold varies within a channel (no per-channel weight
            can carry it).
    """
    gm = copy.deepcopy(snn.graph)
    _Fold(gm, _values(gm, input_shape), snn.T, static).run()
    gm.graph.lint()
    gm.recompile()
    folded = SpikingNetwork(gm, snn.T, snn.encoding, snn.max_batch, snn.amp)
    folded.calibration = snn.calibration
    return folded


def _linear_charge(bias: Tensor) -> tuple[Tensor, Tensor]:
    """The line ``a + c t`` closest to the running sum of ``bias`` ``[T, ...]`` (one current per
    step) in least squares over ``t = 1..T``, through its sum at ``T``: ``(a, c)``, each ``bias[0]``'s
    shape. An initial potential ``a`` and a current ``c`` at every step give about the same charge
    at every step, and the same at ``T``."""
    charge = bias.cumsum(0)
    T = len(bias)
    if T == 1:
        return torch.zeros_like(charge[0]), charge[0]
    t = torch.arange(1, T + 1, dtype=charge.dtype, device=charge.device)
    d = (t - T).view(-1, *[1] * (bias.dim() - 1))
    c = (d * (charge - charge[-1])).sum(0) / (d * d).sum(0)
    return charge[-1] - c * T, c


class _Shapes(fx.Interpreter):
    """Runs the graph once, neurons as their ReLU, keeping every value (for shapes and channels)."""

    def call_module(self, target: str, args: tuple, kwargs: dict) -> Any:
        mod = self.submodules[target]
        return mod.relu(args[0]) if isinstance(mod, IFNeuron) else super().call_module(target, args, kwargs)


def _values(gm: fx.GraphModule, shape: tuple[int, ...]) -> dict[fx.Node, Any]:
    ref = next((t for t in [*gm.parameters(), *gm.buffers()] if t.is_floating_point()), None)
    x = torch.zeros(2, *shape, dtype=torch.float32, device=ref.device if ref is not None else "cpu")
    interp = _Shapes(gm, garbage_collect_values=False)
    with torch.no_grad():
        interp.run(x)
    return dict(interp.env)


class _Fold:
    """One walk over the graph: each batched value's scale ``[C]`` and the free layers behind it."""

    def __init__(self, gm: fx.GraphModule, values: dict[fx.Node, Any], T: int, static: bool) -> None:
        self.gm, self.values, self.T, self.static = gm, values, T, static
        self.scale: dict[fx.Node, Tensor] = {}
        self.free: dict[fx.Node, list[fx.Node]] = {}  # value -> synapses whose rows set its scale
        self.calls: dict[str, int] = {}
        for n in gm.graph.nodes:
            if n.op == "call_module":
                self.calls[n.target] = self.calls.get(n.target, 0) + 1

    # -- values and scales
    def batched(self, arg: Any) -> bool:
        return isinstance(arg, fx.Node) and arg in self.scale

    def channels(self, node: fx.Node) -> int:
        return int(self.values[node].shape[1])

    def ones(self, node: fx.Node) -> Tensor:
        return torch.ones(self.channels(node))

    def fix(self, node: fx.Node, target: Tensor) -> None:
        """Give the free value ``node`` the scale ``target``: its synapses divide their rows by it."""
        for syn in self.free.pop(node):
            mod = self.gm.get_submodule(syn.target)
            with torch.no_grad():
                mod.weight.div_(target.view(-1, *[1] * (mod.weight.dim() - 1)).to(mod.weight))
                if mod.bias is not None:
                    mod.bias.div_(target.to(mod.bias))
        self.scale[node] = target

    def ensure(self, node: fx.Node, target: Tensor, reader: fx.Node) -> None:
        """Make ``reader`` see ``node`` at scale ``target``: fix a free value, or insert a 1x1
        depthwise conv carrying the ratio."""
        if node in self.free:
            self.fix(node, target)
            return
        ratio = self.scale[node] / target
        if torch.equal(ratio, torch.ones_like(ratio)):
            return
        with self.gm.graph.inserting_before(reader):
            carrier = self.gm.graph.call_module(self._carrier(node, ratio), (node,))
        reader.replace_input_with(node, carrier)
        self.values[carrier], self.scale[carrier] = self.values[node], target

    def _carrier(self, node: fx.Node, ratio: Tensor) -> str:
        """A module multiplying channel ``c`` by ``ratio[c]``: a depthwise 1x1 conv (or diagonal linear)."""
        c, rank = len(ratio), self.values[node].dim()
        if rank == 2:
            mod: nn.Module = nn.Linear(c, c, bias=False)
            weight = torch.diag(ratio)
        else:
            mod = (nn.Conv1d if rank == 3 else nn.Conv2d)(c, c, 1, groups=c, bias=False)
            weight = ratio.view(c, 1, *[1] * (rank - 2))
        with torch.no_grad():
            mod.weight.copy_(weight)
        ref = self.values[node]
        mod = mod.to(device=ref.device)
        name, i = f"{node.name}_fold", 0
        while hasattr(self.gm, name):
            i += 1
            name = f"{node.name}_fold{i}"
        self.gm.add_module(name, mod)
        return name

    def settle(self, node: fx.Node) -> Tensor:
        """The scale of ``node``, fixing it to 1 if it was free."""
        if node in self.free:
            self.fix(node, self.ones(node))
        return self.scale[node]

    # -- the walk
    def run(self) -> None:
        for node in list(self.gm.graph.nodes):
            if node.op == "placeholder":
                self.scale[node] = self.ones(node)
            elif node.op == "output":
                if self.batched(node.args[0]):
                    self.ensure(node.args[0], self.ones(node.args[0]), node)
            elif any(self.batched(a) for a in node.all_input_nodes):
                value = self.values.get(node)
                if isinstance(value, Tensor) and value.dim() >= 2:
                    self.visit(node)

    def visit(self, node: fx.Node) -> None:
        mod = self.gm.get_submodule(node.target) if node.op == "call_module" else None
        shared = mod is not None and self.calls[node.target] > 1
        if isinstance(mod, IFNeuron) and not shared:
            self.neuron(node, mod)
        elif isinstance(mod, _SYNAPSE) and not shared and self.batched(node.args[0]):
            self.synapse(node, mod)
        elif node.op == "call_function" and node.target in _SUMS and self._two_values(node):
            self.sum(node)
        elif self._passes(node, mod):
            self.scale[node] = self._passed(node)
            if len(node.users) == 1 and node.args[0] in self.free:
                self.free[node] = self.free.pop(node.args[0])
        elif self._is_reshape(node):
            self.reshape(node)
        elif node.op == "call_function" and node.target is torch.cat and _arg(node, 1, "dim", 0) in (1, -3):
            self.cat(node)
        elif node.op == "call_function" and node.target is operator.getitem and self.batched(node.args[0]):
            self.getitem(node)
        elif node.op == "call_function" and node.target is F.pad and _arg(node, 2, "mode", "constant") in (
            "constant",
        ) and _arg(node, 3, "value") in (None, 0, 0.0):
            self.pad(node)
        else:  # any other op sees true values
            for a in node.all_input_nodes:
                if self.batched(a):
                    self.ensure(a, self.ones(a), node)
            self.scale[node] = self.ones(node)

    def neuron(self, node: fx.Node, neuron: IFNeuron) -> None:
        """Threshold, ``v0`` and ``step_bias`` divided by ``Vth``; the input arrives at scale ``Vth``
        and the unit spikes leave at scale ``Vth`` (a channel whose ``Vth <= 0``, which only
        emits zeros, is left as it is and read at scale 0)."""
        c, rank = self.channels(node), self.values[node].dim()
        th = neuron.threshold.detach().float().cpu()
        if th.numel() not in (1, c):
            raise ConversionError(
                f"cannot fold the thresholds of neuron '{node.target}' at {node_location(node)}: its "
                f"threshold {tuple(th.shape)} varies within a channel; export with fold=False"
            )
        vth = th.reshape(-1).expand(c).clone()
        positive = vth > 0
        div = torch.where(positive, vth, torch.ones_like(vth))  # the input's scale
        self.ensure(node.args[0], div, node)
        v = div.view(c, *[1] * (rank - 2)).to(neuron.threshold.device)
        with torch.no_grad():
            if th.numel() == 1 and bool(positive.all()):
                neuron.threshold = torch.ones_like(neuron.threshold)
            else:
                neuron.threshold = neuron.threshold / v  # Vth / Vth is exactly 1
            if bool(neuron.v0.ne(0).any()):
                neuron.v0 = neuron.v0 / v
            if neuron.step_bias is not None:
                neuron.step_bias = neuron.step_bias / v
        if neuron.shift and self._into_bias(node, neuron.threshold / (2 * self.T)):
            neuron.shift = False
        if self.static and neuron.step_bias is not None:
            kick, current = _linear_charge(neuron.bias_at(0, self.T)[:, 0])
            if current.numel() in (1, c) and self._into_bias(node, current):
                neuron.v0, neuron.step_bias = neuron.v0 + kick.to(neuron.v0), None
        self.scale[node] = torch.where(positive, vth, torch.zeros_like(vth))  # spikes of height Vth

    def _into_bias(self, node: fx.Node, current: Tensor) -> bool:
        """Add the constant (folded) ``current``, one value or one per channel, to the bias of the
        synapse that alone feeds ``node`` (directly or as a term of a residual add); whether one did."""
        src = node.args[0]
        candidates = [src]
        if src.op == "call_function" and src.target in (operator.add, torch.add) and len(src.users) == 1:
            candidates += [a for a in src.args if isinstance(a, fx.Node)]
        for syn in candidates:
            mod = self.gm.get_submodule(syn.target) if syn.op == "call_module" else None
            # a carrier conv inserted by this walk is called once
            if isinstance(mod, _SYNAPSE) and len(syn.users) == 1 and self.calls.get(syn.target, 1) == 1:
                with torch.no_grad():
                    if mod.bias is None:
                        mod.bias = nn.Parameter(mod.weight.new_zeros(mod.weight.shape[0]))
                    mod.bias.add_(current.detach().reshape(-1).expand(mod.weight.shape[0]).to(mod.bias))
                return True
        return False

    def synapse(self, node: fx.Node, mod: nn.Module) -> None:
        """Absorb the input's scale into the columns; the output is free while one reader reads it."""
        s_in = self.settle(node.args[0])
        with torch.no_grad():
            w = mod.weight
            if isinstance(mod, nn.Linear):
                w.mul_(s_in.to(w).view(1, -1))
            else:
                g = mod.groups
                cols = s_in.view(g, -1).repeat_interleave(w.shape[0] // g, dim=0)  # [C_out, C_in / g]
                w.mul_(cols.to(w).view(*cols.shape, *[1] * (w.dim() - 2)))
        self.scale[node] = self.ones(node)
        if len(node.users) == 1:
            self.free[node] = [node]

    def sum(self, node: fx.Node) -> None:
        """``a + b`` (or ``a - b``): both terms at one scale; a neuron reader's threshold if it is the
        only reader."""
        a, b = node.args
        if a is b:
            self.scale[node] = self.settle(a)
            return
        users = list(node.users)
        reader = users[0] if len(users) == 1 else None
        free = [x for x in (a, b) if x in self.free]
        if len(free) == 2 and reader is not None:
            self.free[node] = self.free.pop(a) + self.free.pop(b)
            self.scale[node] = self.ones(node)
            return
        target = self._neuron_scale(reader)
        if target is None:
            fixed = [x for x in (a, b) if x not in self.free]
            target = self.scale[fixed[0]] if fixed else self.ones(node)
        self.ensure(a, target, node)
        self.ensure(b, target, node)
        self.scale[node] = target

    def _neuron_scale(self, reader: fx.Node | None) -> Tensor | None:
        """The input scale the neuron ``reader`` will ask for (``None`` if it is no neuron)."""
        if reader is None or reader.op != "call_module":
            return None
        mod = self.gm.get_submodule(reader.target)
        if not isinstance(mod, IFNeuron) or mod.threshold.numel() not in (1, self.channels(reader)):
            return None
        vth = mod.threshold.detach().float().cpu().reshape(-1).expand(self.channels(reader))
        return torch.where(vth > 0, vth, torch.ones_like(vth))

    def _two_values(self, node: fx.Node) -> bool:
        return (
            not node.kwargs and len(node.args) == 2 and all(self.batched(a) for a in node.args)
            and all(self.values[a].shape == self.values[node].shape for a in node.args)
        )

    # -- ops the scale passes through or is rearranged by
    def _passes(self, node: fx.Node, mod: nn.Module | None) -> bool:
        if not self.batched(node.args[0] if node.args else None):
            return False
        if mod is not None:
            return isinstance(mod, _PASS_MODULES)
        if node.op == "call_function" and node.target in _SCALARS:
            return len(node.args) == 2 and isinstance(node.args[1], (int, float)) and not node.kwargs
        if node.op == "call_function":
            return node.target in _PASS_FUNCTIONS
        return node.op == "call_method" and node.target in _PASS_METHODS

    def _passed(self, node: fx.Node) -> Tensor:
        """The input's scale, for an op that keeps channels (a mean without keepdim keeps them too)."""
        src = node.args[0]
        s = self.scale[src]
        if self.channels(node) != len(s):
            raise ConversionError(f"node '{node.name}' changes the channels; it cannot carry a scale")
        return s

    def _is_reshape(self, node: fx.Node) -> bool:
        if not self.batched(node.args[0] if node.args else None):
            return False
        if node.op == "call_module":
            return isinstance(self.gm.get_submodule(node.target), nn.Flatten)
        return (node.op == "call_function" and node.target in _RESHAPES_F) or (
            node.op == "call_method" and node.target in _RESHAPES_M
        )

    def reshape(self, node: fx.Node) -> None:
        """A reshape that keeps the channel dim first: each channel's scale repeats over the
        positions it covers (flatten); any other shape sees true values."""
        src = node.args[0]
        s, shape_in, shape_out = self.settle(src), self.values[src].shape[1:], self.values[node].shape[1:]
        per = shape_in.numel() // len(s)
        if shape_out.numel() == shape_in.numel() and shape_out[0] % len(s) == 0 and (
            shape_out == shape_in or (len(shape_out) == 1 and shape_out[0] == len(s) * per)
            or shape_out[0] == len(s)
        ):
            self.scale[node] = s.repeat_interleave(shape_out[0] // len(s))
            return
        self.ensure(src, self.ones(src), node)
        self.scale[node] = self.ones(node)

    def cat(self, node: fx.Node) -> None:
        parts = []
        for t in node.args[0]:
            parts.append(self.settle(t) if self.batched(t) else torch.ones(self.values[t].shape[1]))
        self.scale[node] = torch.cat(parts)

    def getitem(self, node: fx.Node) -> None:
        src, idx = node.args
        idx = idx if isinstance(idx, tuple) else (idx,)
        s = self.settle(src)
        if len(idx) >= 2 and all(isinstance(i, slice) for i in idx) and idx[0] == slice(None):
            self.scale[node] = s[idx[1]]
            return
        self.ensure(src, self.ones(src), node)
        self.scale[node] = self.ones(node)

    def pad(self, node: fx.Node) -> None:
        """Zero padding: padded channels are zeros at any scale (1 here)."""
        src, pad = node.args[0], node.args[1]
        s, rank = self.settle(src), self.values[src].dim()
        pairs = [tuple(pad[i : i + 2]) for i in range(0, len(pad), 2)]
        if len(pairs) >= rank - 1:  # pads channels
            lo, hi = pairs[rank - 2]
            if lo < 0 or hi < 0:  # cropping: the exporter refuses it; true values here
                self.ensure(src, self.ones(src), node)
                s = self.ones(node)
            else:
                s = torch.cat([torch.ones(lo), s, torch.ones(hi)])
        self.scale[node] = s


def _arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)
