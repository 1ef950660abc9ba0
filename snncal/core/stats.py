"""What a spike costs: synaptic operations, multiply-accumulates and energy of an SNN and its ANN.

Every number is per image (the mean over the images simulated) for a simulation of ``T`` steps.

**Synaptic operations (SOPs).** A spike drives each synaptic connection that reads it once, and each
such drive costs one accumulate (AC): the weight is added to the target, with no multiply, since a
spike is 0 or ``Vth`` and ``Vth`` folds into the weights. So

    SOPs = sum over neurons n, elements e of  spikes(n, e) * fanout(n, e)

where ``spikes(n, e)`` counts the spikes of element ``e`` over all steps (the engine's
``spike_counts``) and ``fanout(n, e)`` is the number of connections that read ``e``.

**Fan-out**, exactly, per element (borders, strides, padding, dilation and groups included): the
number of paths from ``e`` to the *consumers* that read it through the linear ops between them (pad,
slicing, view and flatten, cat, add and sub, permutes, average pools). A consumer is

- a conv or linear: one path per weight that reads ``e`` (a 3x3 conv with ``C_out`` output channels
  reads an interior element ``9 C_out / groups`` times, a border element fewer times);
- an accumulator that the spike reaches with no weight between: an IF neuron (the identity shortcut
  of a residual add puts each spike into the potential: one AC per path) or the network output.

It is computed as a gradient: run the graph on one image with every conv/linear weight set to 1 and
no bias, every average pool replaced by a sum pool over the same windows (``mean`` by ``sum``,
constant factors by 1, ``a - b`` by ``a + b``, an unfolded BatchNorm by the identity), each neuron's
output a fresh leaf; the fan-out of every element of every neuron is the gradient of the sum of all
consumers' outputs with respect to that leaf. Consumers end the paths (a conv's output is detached,
a neuron's output is a new leaf), so one forward and one backward pass in float64 give all fan-outs.
Zero weights count as connections (dense synapses).

**Average pools of spikes** (those kept as linear ops, ``convert_avgpool=False`` or a pool whose
input is not a neuron): the pooled values are no longer binary. We keep the spikes as the events: the
pool is folded into the conv that reads it (pool then conv is one linear map, whose weights are the
conv's divided by the window size), so a spike drives the conv's connections of every window that
contains it, the pool costs no operation of its own, and behind a non-overlapping 2x2 pool a spike has
the fan-out of the pooled element it falls into. The alternative, counting the conv's work on the
pooled map as MACs, is not used. With ``convert_avgpool=True`` (the default) a pool of spikes is a
depthwise conv followed by IF neurons, and counts as a conv.

**Dense layers: the SNN's remaining MACs.** A conv or linear whose input is not only spikes (it
reads the analog image under direct encoding, or another conv/linear's output without a neuron
between, as in MobileNetV2's linear bottlenecks) does what the ANN does: ``macs`` multiply-
accumulates. The engine (:mod:`snncal.core.engine`) computes a value that does not change over
time once per image and reuses it at every step: under direct encoding that is the first layer and
everything else before the first neuron, so they cost their MACs once per image, not ``T`` times.
A dense layer that depends on spikes is computed at every step and costs ``T * macs``. The SNN's
MACs by layer are in :attr:`NetworkStats.snn_mac_layers`.

**Poisson encoding.** The input is a spike train, so the first layer is event-driven. Its SOPs
(:attr:`NetworkStats.input_sops_per_image`, included in ``sops_per_image``) are counted from the
expected number of input events, ``T * |x| / max|x|`` per pixel, since the engine draws the events
inside the simulation.

**ANN MACs.** Every conv/linear of the converted graph (BN folded; with ``convert_avgpool`` the
pools of spikes are depthwise convs): output elements x (in_channels / groups x kernel volume), or
out x in features for a linear. Biases, pools, adds, unfolded BatchNorms and ReLUs are not counted.

**Energy** (:class:`EnergyModel`, pJ per image). Operations only, the common convention (Horowitz,
ISSCC 2014, 45 nm, 32-bit float: an add 0.9 pJ, a multiply 3.7 pJ):

    E_ANN = MACs_ANN * E_MAC
    E_SNN = SOPs * E_AC + MACs_SNN * E_MAC           E_AC = 0.9 pJ, E_MAC = 4.6 pJ

Operation counts under-report energy by a large factor, since moving a 32-bit word to or from SRAM
costs more than a MAC. Memory-aware analyses (Dampfhoffer et al., IEEE TETCI 2022; Lemaire et al.,
ICONIP 2022) add the memory accesses each operation needs; ours is a simple model of that kind, where
every operand is read from and every result written to an on-chip SRAM, with no reuse:

    E_ANN,mem = MACs_ANN * (E_MAC + 2 E_rd) + outputs_ANN * E_wr
    E_SNN,mem = SOPs * (E_AC + E_rd) + N * T * (E_rd + E_wr)
                + MACs_SNN * (E_MAC + 2 E_rd) + outputs_SNN * E_wr

An ANN MAC reads an input and a weight, each output of a conv/linear is written once. An SOP reads
its weight, and the current accumulates in the target's register; each of the ``N`` neurons reads
and writes its membrane potential at every one of the ``T`` steps, spiking or not, a cost that
grows with ``T`` and that operation counts miss. Dense SNN layers cost what they cost in the ANN,
once or ``T`` times per image (``outputs_SNN`` likewise). ``E_rd = E_wr = 5 pJ``: Horowitz reports
about 10 pJ per 64-bit access to an 8 KB SRAM (20 pJ at 32 KB, 100 pJ at 1 MB, 1.3-2.6 nJ for
DRAM); we take half for a 32-bit word, the optimistic end. Not counted: routing spikes (addresses,
queues), reading the input image, the neuron's threshold compare, the readout of the output,
control, and data reuse in registers or larger memories (override :class:`EnergyModel` to model
them, e.g. a DRAM access for weights that do not fit on chip).

References: M. Horowitz, *Computing's energy problem (and what we can do about it)*, ISSCC 2014;
M. Dampfhoffer, T. Mesquida, A. Valentian, L. Anghel, *Are SNNs really more energy-efficient than
ANNs? An in-depth hardware-aware study*, IEEE TETCI 2022; E. Lemaire, L. Cordone, A. Castagnetti,
P.-E. Novac, J. Courtois, B. Miramond, *An analytical estimation of spiking neural networks energy
efficiency*, ICONIP 2022.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from snncal.core.device import module_device
from snncal.core.encoding import spike_scale
from snncal.core.engine import SpikingNetwork, simulate
from snncal.core.evaluate import input_batches
from snncal.core.files import to_plain
from snncal.core.graph import SYNAPSES, ops
from snncal.core.neuron import is_neuron

__all__ = [
    "INPUT",
    "Connectivity",
    "EnergyModel",
    "LayerCost",
    "NetworkStats",
    "WeightLayer",
    "connectivity",
    "stats",
]

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


@dataclass(frozen=True)
class EnergyModel:
    """Energy per operation and per memory access, in pJ; the defaults are 45 nm, 32-bit float.

    ``ac_pj`` (0.9, a float add) and ``mac_pj`` (4.6, a float multiply 3.7 + add 0.9) are the
    common convention from M. Horowitz, *Computing's energy problem*, ISSCC 2014. ``read_pj`` and
    ``write_pj`` (5.0) are one 32-bit word from/to a small (8 KB) SRAM, half of Horowitz's 10 pJ per
    64-bit access; larger memories cost more (32 KB: 20 pJ, 1 MB: 100 pJ per 64 bits). The
    formulas are in the docstring of :mod:`snncal.core.stats`.
    """

    ac_pj: float = 0.9
    mac_pj: float = 4.6
    read_pj: float = 5.0
    write_pj: float = 5.0

    def operations(self, sops: float, macs: float) -> float:
        """The arithmetic alone: ``sops * E_AC + macs * E_MAC``."""
        return sops * self.ac_pj + macs * self.mac_pj

    def dense_memory(self, macs: float, outputs: float) -> float:
        """SRAM traffic of dense layers: an input and a weight read per MAC, one write per output."""
        return macs * 2 * self.read_pj + outputs * self.write_pj

    def spiking_memory(self, sops: float, neuron_steps: float) -> float:
        """SRAM traffic of spiking layers: a weight read per SOP, a membrane potential read and
        write per neuron per step."""
        return sops * self.read_pj + neuron_steps * (self.read_pj + self.write_pj)


@dataclass
class LayerCost:
    """Activity and cost of one IF layer, per image.

    ``rate`` is spikes per neuron per step; ``fanout`` the mean over the layer's neurons of the
    connections each drives; ``sops_per_image`` the layer's spikes times their fan-outs.
    """

    name: str
    neurons: int
    rate: float
    spikes_per_image: float
    fanout: float
    sops_per_image: float


@dataclass
class NetworkStats:
    """What an SNN costs against its ANN, per image; see :mod:`snncal.core.stats` for the model.

    Energies are in pJ per image: ``*_energy_pj`` counts operations only (the common convention),
    ``*_energy_with_memory_pj`` adds the SRAM accesses. ``sops_per_image`` includes the input's
    (``input_sops_per_image``, non-zero under Poisson encoding only); ``snn_macs_per_image`` are the
    MACs of the SNN's dense layers, by layer in ``snn_mac_layers``.
    """

    T: int
    images: int
    encoding: str
    neurons: int
    spikes_per_image: float
    rate: float
    sops_per_image: float
    input_sops_per_image: float
    ann_macs_per_image: float
    snn_macs_per_image: float
    ann_energy_pj: float
    snn_energy_pj: float
    ann_energy_with_memory_pj: float
    snn_energy_with_memory_pj: float
    snn_mac_layers: dict[str, float] = field(default_factory=dict)
    layers: list[LayerCost] = field(default_factory=list)
    energy_model: EnergyModel = field(default_factory=EnergyModel)

    def to_dict(self) -> dict:
        """Plain data, JSON-ready."""
        return to_plain(self)


# ----------------------------------------------------------------------------- the graph
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


def _flow(gm: fx.GraphModule, encoding: str) -> tuple[dict[fx.Node, frozenset[str]], set[fx.Node]]:
    """Per node, the sources its value is a linear function of (neurons, :data:`INPUT`, or the
    output of a conv/linear), and the set of values that change over time (as in the engine)."""
    sources: dict[fx.Node, frozenset[str]] = {}
    temporal: set[fx.Node] = set()
    for n in gm.graph.nodes:
        ins = n.all_input_nodes
        changes = any(a in temporal for a in ins)
        if n.op == "placeholder":
            src, changes = {INPUT}, encoding != "direct"
        elif is_neuron(gm, n):
            src, changes = {n.target}, True
        elif _is_weight_layer(gm, n):
            src = {_ANALOG}
        else:
            src = set().union(*(sources[a] for a in ins))
        sources[n] = frozenset(src)
        if changes:
            temporal.add(n)
    return sources, temporal


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
    sources, temporal = _flow(gm, encoding)
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


# ----------------------------------------------------------------------------- the counts
def _expected_events(x: Tensor, T: int) -> Tensor:
    """Expected input spikes per element ``[C, ...]`` over ``T`` steps of Poisson encoding, summed
    over the batch (see :func:`snncal.core.encoding.poisson`)."""
    return T * (x.abs().double() / spike_scale(x)).sum(0)


def _layer(name: str, count: Tensor | None, fanout: Tensor, images: int, T: int) -> LayerCost:
    neurons = fanout.numel()
    spikes = 0.0 if count is None else float(count.sum()) / images
    sops = 0.0 if count is None else float((count.double() * fanout).sum()) / images
    return LayerCost(name, neurons, spikes / max(1, neurons * T), spikes,
                      float(fanout.mean()) if neurons else 0.0, sops)


@torch.no_grad()
def stats(
    snn: SpikingNetwork,
    data: Tensor | Iterable,
    T: int | None = None,
    max_images: int | None = None,
    *,
    energy: EnergyModel | None = None,
) -> NetworkStats:
    """Spikes, synaptic operations, MACs and energy of ``snn`` and of its ANN, per image.

    Args:
        snn: the spiking network.
        data: an input batch ``[N, ...]``, or an iterable of ``x`` or ``(x, y)`` batches.
        T: simulation length (default ``snn.T``).
        max_images: stop after this many images.
        energy: the energy constants (default :class:`EnergyModel`).

    Returns:
        A :class:`NetworkStats` with one :class:`LayerCost` per neuron, in graph order. The model
        (what is counted, the formulas, the references) is the docstring of :mod:`snncal.core.stats`.
    """
    T, energy = T or snn.T, energy or EnergyModel()
    device = module_device(snn)
    counts: dict[str, Tensor] = {}
    conn, events, seen = None, 0.0, 0
    for x in input_batches(data, max_images):
        x = x.to(device)
        if conn is None:
            conn = connectivity(snn.graph, x[:1], snn.encoding)
        simulate(snn.graph, x, T, encoding=snn.encoding, max_batch=snn.max_batch, spike_counts=counts)
        if snn.encoding != "direct":
            events = events + _expected_events(x, T)
        seen += len(x)
    if conn is None:
        raise ValueError("stats got no images")
    layers = [_layer(name, counts.get(name), conn.fanouts[name], seen, T) for name in snn.neurons()]
    input_sops = float((events * conn.fanouts[INPUT]).sum()) / seen if snn.encoding != "direct" else 0.0
    return _network(conn, layers, input_sops, seen, T, snn.encoding, energy)


def _network(
    conn: Connectivity, layers: list[LayerCost], input_sops: float, images: int, T: int,
    encoding: str, energy: EnergyModel,
) -> NetworkStats:
    """Totals and energies from the per-layer counts."""
    neurons = sum(layer.neurons for layer in layers)
    spikes = sum(layer.spikes_per_image for layer in layers)
    sops = sum(layer.sops_per_image for layer in layers) + input_sops
    dense = [(w, T if w.temporal else 1) for w in conn.layers if not w.event_driven]
    snn_macs = float(sum(w.macs * times for w, times in dense))
    snn_outputs = float(sum(w.outputs * times for w, times in dense))
    ann_macs = float(sum(w.macs for w in conn.layers))
    ann_outputs = float(sum(w.outputs for w in conn.layers))
    snn_energy = energy.operations(sops, snn_macs)
    return NetworkStats(
        T=T, images=images, encoding=encoding, neurons=neurons, spikes_per_image=spikes,
        rate=spikes / max(1, neurons * T), sops_per_image=sops, input_sops_per_image=input_sops,
        ann_macs_per_image=ann_macs, snn_macs_per_image=snn_macs,
        ann_energy_pj=energy.operations(0.0, ann_macs),
        snn_energy_pj=snn_energy,
        ann_energy_with_memory_pj=energy.operations(0.0, ann_macs)
        + energy.dense_memory(ann_macs, ann_outputs),
        snn_energy_with_memory_pj=snn_energy + energy.dense_memory(snn_macs, snn_outputs)
        + energy.spiking_memory(sops, neurons * T),
        snn_mac_layers={w.name: float(w.macs * times) for w, times in dense},
        layers=layers, energy_model=energy,
    )
