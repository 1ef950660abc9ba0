"""One IF neuron as a calibration step sees it, in the middle of the sweep: a :class:`Layer`.

A layer is simulated several times (measure, correct, measure again), but most steps change only
its neuron (threshold, initial potential, time-dependent bias) or the bias of the conv feeding it,
which moves the input current by a constant. The layer therefore keeps its input current from its
first simulation, within the sweep's memory budget, and later simulations re-run only the neuron
(a bias change is added to the kept current). Steps that change weights drop it.

What a step reads, by name: the ANN's :attr:`~Layer.target`; the segment's inputs as rates
(:meth:`~Layer.input_rates`, :meth:`~Layer.rates_of`) or as spike trains per minibatch
(:meth:`~Layer.input_trains`); the neuron's input current computed from given values
(:meth:`~Layer.current_from`) or as simulated per minibatch (:meth:`~Layer.input_currents`), and
the neuron's response to it (:meth:`~Layer.responses`); its error statistics
(:meth:`~Layer.error_stats`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import Tensor, fx, nn

from snncal.core import distributed as dist
from snncal.core.calibrate.reports import LayerStats
from snncal.core.calibrate.segments import Segment, bias_synapse, synapses
from snncal.core.neuron import IFNeuron, is_neuron

if TYPE_CHECKING:
    from snncal.core.calibrate.sweep import Sweep

__all__ = ["Layer"]


def _shares_memory(a: Tensor, b: Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


class Layer:
    """One IF neuron as a calibration step sees it, in the middle of the sweep.

    Attributes:
        name: the neuron's module name (the ANN activation it replaces).
        neuron: the :class:`IFNeuron`; steps may set its ``threshold``, ``v0``, ``reset``, ``shift``.
        segment: the linear ops between earlier neurons (or the input) and this neuron.
        ann_input: the ANN's input to this activation on the whole calibration set ``[N, ...]``.
        target: the ANN activation's output, ``ReLU(ann_input)`` (clipped for ReLU6).
        synapses: the conv/linear modules of the segment, nearest first (their weights may change).
        bias_synapse: the conv/linear adding 1:1 into the neuron's input, or ``None``.
        info: what steps report about this layer (e.g. the weight-calibration loss).
    """

    def __init__(self, sweep: Sweep, seg: Segment) -> None:
        self._sweep, self.segment = sweep, seg
        self.name: str = seg.neuron.target
        self.neuron: IFNeuron = sweep.gm.get_submodule(self.name)
        self.ann_input = sweep.ann_input(seg)
        self.target = self.neuron.relu(self.ann_input)
        self.synapses = synapses(sweep.gm, seg)
        self.bias_synapse = bias_synapse(sweep.gm, seg)
        self.info: dict[str, object] = {}
        self.first_stats: LayerStats | None = None
        self.finished = False
        self._stats: LayerStats | None = None
        self._currents: dict[int, tuple[Tensor, bool]] = {}  # minibatch -> (current, temporal)
        self._bias_shift: Tensor | None = None  # add_bias's change, not yet in the bias
        self._target_max: float | None = None

    @property
    def num_images(self) -> int:
        """The number of calibration images over every process's share."""
        return self._sweep.num_images

    @property
    def target_max(self) -> float:
        """The largest :attr:`target` over every process's share (a bound for exact sums)."""
        if self._target_max is None:
            top = self.target.max() if self.target.numel() else self.target.new_zeros(())
            self._target_max = float(dist.all_reduce_max(top.float().clone()))
        return self._target_max

    @property
    def T(self) -> int:
        return self._sweep.T

    @property
    def generator(self) -> torch.Generator:
        """The sweep's seeded random source (minibatches of weight calibration, Poisson input)."""
        return self._sweep.generator

    def changed(self, neuron_only: bool = False) -> None:
        """Say that a step changed this layer, so that its statistics are measured again.

        ``neuron_only``: only the neuron changed (its threshold, ``v0``, ``step_bias``, ``shift``),
        so the input currents kept from the last simulation stay valid; otherwise (weights) they
        are computed again."""
        self._stats = None
        if not neuron_only:
            self.drop_currents()

    def add_bias(self, delta: Tensor) -> None:
        """Add ``delta`` ``[C]`` to the bias of :attr:`bias_synapse`, which moves the neuron's
        input current by exactly ``delta`` per channel.

        Until the layer is finished the change is added to the current the segment computes with
        its old bias, and the kept currents move with it: the sweep's numbers are then the same,
        bit for bit, whether or not the currents fit in its memory budget. :meth:`fold_bias`
        puts it into the bias when the sweep finishes the layer."""
        if self.bias_synapse is None:
            raise RuntimeError(f"{self.name}: no conv/linear adds directly into this neuron")
        shift = delta.to(self.target).view(-1, *([1] * (self.target.dim() - 2)))
        self._bias_shift = shift if self._bias_shift is None else self._bias_shift + shift
        for current, _ in self._currents.values():
            current.add_(shift)  # the same float op as a new current's ``+ shift``
        self._stats = None

    def fold_bias(self) -> None:
        """Put the pending :meth:`add_bias` change into the bias of :attr:`bias_synapse`."""
        if self._bias_shift is None:
            return
        synapse, delta = self.bias_synapse, self._bias_shift.flatten()
        if synapse.bias is None:
            synapse.bias = nn.Parameter(torch.zeros_like(delta).to(synapse.weight))
        synapse.bias.data += delta.to(synapse.bias)
        self._bias_shift = None

    def drop_currents(self) -> None:
        """Forget the kept input currents and give their memory back to the sweep."""
        for current, _ in self._currents.values():
            self._sweep.budget.give(current.numel() * current.element_size())
        self._currents.clear()

    def input_current(self, b: int, keep: bool = True) -> tuple[Tensor, bool]:
        """The neuron's input current in the simulation for minibatch ``b``: ``(current,
        temporal)``, time folded into the batch when temporal. Computed once and kept while the
        sweep's memory budget allows (``keep``); not to be changed in place."""
        sweep = self._sweep
        if b in self._currents:
            if keep:
                return self._currents[b]
            current, temporal = self._currents.pop(b)
            sweep.budget.give(current.numel() * current.element_size())
            return current, temporal
        current, temporal = sweep.run_segment(self.segment, *sweep.input_trains(self.segment, b))
        if self._bias_shift is not None:
            current = current + self._bias_shift
        if keep and sweep.budget.take(current.numel() * current.element_size()):
            if _shares_memory(current, sweep.images):  # kept currents are shifted in place
                current = current.clone()
            self._currents[b] = (current, temporal)
        return current, temporal

    def error_stats(self) -> LayerStats:
        """Error statistics of this layer's rate against :attr:`target`, simulated over the
        calibration set on the stored spike trains of the layers before it (cached until
        :meth:`changed`)."""
        return self._stats if self._stats is not None else self.measure()

    def measure(self, store: bool = False) -> LayerStats:
        """Simulate this layer over the calibration set and keep its statistics (with ``store``,
        the layer's last simulation, its spike trains too, for the layers that read them)."""
        self._stats = self._sweep.measure(self, store)
        self.first_stats = self.first_stats or self._stats
        return self._stats

    @property
    def last_stats(self) -> LayerStats | None:
        """The statistics of the last simulation, ``None`` if a step changed the layer since."""
        return self._stats

    @property
    def pending_bias(self) -> Tensor | None:
        """The :meth:`add_bias` change not yet put into the bias, ``[C, 1, ...]`` (or ``None``)."""
        return self._bias_shift

    def input_rates(self) -> dict[fx.Node, Tensor]:
        """The segment's inputs as rates (time averages of the spike trains, times ``Vth``) on
        the whole calibration set; the input image as it is."""
        return self._sweep.rates_of(self.segment.inputs)

    def current_from(self, values: dict[fx.Node, Tensor], temporal: frozenset = frozenset()) -> Tensor:
        """The neuron's input current from the segment's input ``values`` (differentiable)."""
        current = self._sweep.run_segment(self.segment, values, temporal)[0]
        return current if self._bias_shift is None else current + self._bias_shift

    def output_rate(self) -> Tensor | None:
        """Once the sweep finished this layer: its rate (time average of its spike trains, times
        ``Vth``) on the whole calibration set; ``None`` if no later layer reads it (not stored)."""
        node = self.segment.neuron
        return self._sweep.rate_of(node) if node in self._sweep.spikes else None

    def input_trains(self) -> Iterator[tuple[dict[fx.Node, Tensor], frozenset]]:
        """The segment's inputs as the simulation sees them, one minibatch at a time:
        ``(values, temporal)`` for :meth:`current_from` (time folded into the batch)."""
        for b in range(len(self._sweep.slices)):
            yield self._sweep.input_trains(self.segment, b)

    @torch.no_grad()
    def input_currents(self) -> Iterator[tuple[slice, Tensor]]:
        """The neuron's input current in the simulation, one minibatch at a time: ``(index,
        current)``, the minibatch's slice of :attr:`target` and ``[T, B, ...]`` (a constant
        current is expanded, not copied)."""
        for b, index in enumerate(self._sweep.slices):
            current, temporal = self.input_current(b)
            if temporal:
                yield index, current.view(self.T, -1, *current.shape[1:])
            else:
                yield index, current.expand(self.T, *current.shape)

    def responses(self) -> Iterator[tuple[slice, Tensor, Tensor]]:
        """This layer simulated as it stands, one minibatch at a time: ``(index, current,
        output)`` as :meth:`input_currents`, with the output (spikes times ``Vth``) ``[T, B, ...]``."""
        for index, x in self.input_currents():
            with torch.no_grad():
                out, _ = self.neuron.scan(x, self.neuron.init_state(x[0]), self.T, self.T)
            yield index, x, out

    def junction_partners(self) -> list[IFNeuron]:
        """The earlier neurons whose spikes meet this layer's at a later segment and which this
        layer itself reads: for the neuron of a residual block's non-identity path, the block's
        input neuron (the junction ``relu(conv2(s) + x)`` reads both). Empty if there is none."""
        sweep, node, mine = self._sweep, self.segment.neuron, set(self.segment.inputs)
        found: dict[fx.Node, IFNeuron] = {}
        for seg in sweep.segments:
            others = [n for n in seg.inputs if n is not node]
            if node in seg.inputs and others and all(
                n in mine and is_neuron(sweep.gm, n) for n in others
            ):
                found.update({n: sweep.gm.get_submodule(n.target) for n in others})
        return list(found.values())

    def block(self) -> list[Layer]:
        """The earlier layers whose spike trains this layer's input is computed from, back to the
        values the sweep still holds: each finished layer among the segment's inputs whose own
        inputs are all still stored (or the input image), and so on back, in graph order. In a
        residual block, the block's first neuron (its input is still held for the shortcut);
        in a chain, none. A step may change these layers and :meth:`restore` them."""
        sweep, found, todo = self._sweep, {}, list(self.segment.inputs)
        while todo:
            node = todo.pop()
            layer = sweep.held.get(node)
            if layer is None or node in found:
                continue
            if all(i is sweep.placeholder or i in sweep.spikes for i in layer.segment.inputs):
                found[node] = layer
                todo.extend(layer.segment.inputs)
        return sorted(found.values(), key=lambda layer: sweep.order[layer.segment.neuron])

    def block_inputs(self, inner: list[Layer]) -> list[fx.Node]:
        """The values ``inner`` (a :meth:`block`) and this layer read from outside the block."""
        inside = {layer.segment.neuron for layer in inner}
        nodes = {i for layer in [*inner, self] for i in layer.segment.inputs} - inside
        return sorted(nodes, key=self._sweep.order.get)

    def rates_of(self, nodes: list[fx.Node]) -> dict[fx.Node, Tensor]:
        """Held values as rates on the whole calibration set (see :meth:`input_rates`)."""
        return self._sweep.rates_of(nodes)

    def restore(self) -> LayerStats:
        """Simulate a finished layer again after a later step changed it (e.g. the weights of a
        :meth:`block`) and replace its stored spike trains; returns its new statistics."""
        if not self.finished:
            raise RuntimeError(f"{self.name}: restore() is for finished layers; use changed()")
        sweep = self._sweep
        sweep.spikes.pop(self.segment.neuron).free()
        stats = self.measure(store=True)
        if sweep.active is not None:  # its input changed: its kept currents are stale
            sweep.active.drop_currents()
        return stats
