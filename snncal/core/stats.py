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

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from snncal.core.connectivity import INPUT, Connectivity, WeightLayer, connectivity
from snncal.core.engine import SpikingNetwork
from snncal.core.evaluate import LayerRate, count_spikes
from snncal.core.files import to_plain

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
class LayerCost(LayerRate):
    """Activity and cost of one IF layer, per image: its :class:`~snncal.core.evaluate.LayerRate`
    (``rate`` is spikes per neuron per step) plus ``fanout``, the mean over the layer's neurons of
    the connections each drives, and ``sops_per_image``, the layer's spikes times their fan-outs.
    """

    fanout: float = 0.0
    sops_per_image: float = 0.0


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


# ----------------------------------------------------------------------------- the counts
def _layer(rate: LayerRate, count: Tensor | None, fanout: Tensor, images: int) -> LayerCost:
    sops = 0.0 if count is None else float((count.double() * fanout).sum()) / images
    return LayerCost(**vars(rate), fanout=float(fanout.mean()) if rate.neurons else 0.0,
                     sops_per_image=sops)


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
    energy = energy or EnergyModel()
    # stats counts in float32 whatever the network's autocast setting (amp="off"), as it always has
    spikes = count_spikes(snn, data, T or snn.T, max_images, amp="off", caller="stats")
    T, seen = spikes.T, spikes.images
    conn = connectivity(snn.graph, spikes.first, snn.encoding)
    layers = [
        _layer(spikes.layer(name, conn.fanouts[name].numel()), spikes.counts.get(name),
               conn.fanouts[name], seen)
        for name in snn.neurons()
    ]
    events = spikes.input_events
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
