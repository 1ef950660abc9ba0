"""One sequential sweep over the spiking graph: it yields each layer once, in graph order.

A *layer* is one IF neuron together with its *segment*: the linear ops (conv, add, pad, pool, ...)
between the outputs of earlier neurons (or the input) and this neuron's input current. For every
layer the sweep computes the ANN input once, hands the :class:`Layer` to the calibration steps,
then simulates the calibrated layer on the already calibrated spike trains of the layers before it
and stores its spike trains (bit-packed) for the layers after it. Stored values are freed after
their last reader, so the cost is linear in depth and memory is bounded by the widest set of live
layers. A sweep whose steps need no spike trains (thresholds from the ANN alone) simulates nothing.

A layer is simulated several times (measure, correct, measure again), but most steps change only
its neuron (threshold, initial potential, time-dependent bias) or the bias of the conv feeding it,
which moves the input current by a constant. The sweep therefore keeps the layer's input current
from its first simulation, within the memory budget, and later simulations re-run only the neuron
(a bias change is added to the kept current). Steps that change weights drop it.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, fx, nn

from snncal.core import distributed as dist
from snncal.core.calibrate.store import SpikeStore, spill_folder
from snncal.core.engine import auto_max_batch, encode, run_nodes
from snncal.core.graph import SYNAPSES
from snncal.core.neuron import IFNeuron, is_neuron

__all__ = [
    "CPU_SWEEP_BATCH",
    "CalibrationReport",
    "Layer",
    "LayerReport",
    "LayerStats",
    "Segment",
    "Sweep",
    "bias_synapse",
    "segments",
    "synapses",
]

log = logging.getLogger("snncal")

# The sweep's time-folded batch off CUDA. Its neuron runs see all T steps of a minibatch at once;
# at the engine's CPU default (64: 2 images at T = 32) their element-wise ops are too small to use
# two cores, and 256 made ResNet-20's light pipeline 22 % faster on 2 threads, no slower on one.
CPU_SWEEP_BATCH = 256


def _shares_memory(a: Tensor, b: Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def _as_float(spikes: Tensor) -> Tensor:
    """Bool -> float32, through uint8 (several times faster than a direct bool cast on CPU)."""
    return spikes.view(torch.uint8).to(torch.float32)


@dataclass
class Segment:
    """The ops that compute one neuron's input current from earlier neurons and the input."""

    neuron: fx.Node
    nodes: list[fx.Node]  # in graph order, ending with the neuron's input node
    inputs: list[fx.Node]  # neurons or placeholders read by ``nodes`` (or the neuron itself)

    @property
    def current(self) -> fx.Node:
        return self.neuron.args[0]


def segments(gm: fx.GraphModule) -> list[Segment]:
    """One :class:`Segment` per neuron, in graph order."""
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    found = []
    for neuron in gm.graph.nodes:
        if not is_neuron(gm, neuron):
            continue
        nodes, inputs, todo = set(), set(), [neuron.args[0]]
        while todo:
            n = todo.pop()
            if n.op == "placeholder" or is_neuron(gm, n):
                inputs.add(n)
            elif n not in nodes:
                nodes.add(n)
                todo.extend(n.all_input_nodes)
        found.append(Segment(neuron, sorted(nodes, key=order.get), sorted(inputs, key=order.get)))
    return found


def synapses(gm: fx.GraphModule, seg: Segment) -> list[nn.Module]:
    """The conv/linear modules of a segment, nearest to the neuron first."""
    mods = [gm.get_submodule(n.target) for n in reversed(seg.nodes) if n.op == "call_module"]
    return [m for m in mods if isinstance(m, SYNAPSES)]


def bias_synapse(gm: fx.GraphModule, seg: Segment) -> nn.Module | None:
    """The conv/linear whose output channels add 1:1 into the neuron's input, if there is one.

    Followed back through additions only, so a bias change shifts the neuron's input exactly.
    """
    todo = [seg.current]
    while todo:
        n = todo.pop(0)
        if n.op == "call_module" and isinstance(gm.get_submodule(n.target), SYNAPSES):
            return gm.get_submodule(n.target)
        if n in seg.nodes and n.op == "call_function" and getattr(n.target, "__name__", "") in (
            "add", "iadd"
        ):
            todo.extend(a for a in n.args if isinstance(a, fx.Node))
    return None


@dataclass
class LayerStats:
    """Sums over the calibration set: ``rate - target`` (element-wise), its square, and how many
    inputs fall in the neuron's linear range ``0 < mean current < Vth`` (element-wise)."""

    error_sum: Tensor
    linear_sum: Tensor
    sq_sum: float
    count: int

    @property
    def element_error(self) -> Tensor:
        """Mean error per element ``[C, ...]``."""
        return self.error_sum / self.count

    @property
    def channel_error(self) -> Tensor:
        """Mean error per channel ``[C]``."""
        e = self.element_error
        return e.flatten(1).mean(1) if e.dim() > 1 else e

    @property
    def element_gain(self) -> Tensor:
        """Per element, d E[rate] / d(input shift): the fraction of inputs in the linear range."""
        return self.linear_sum / self.count

    @property
    def channel_gain(self) -> Tensor:
        """Per channel, d E[rate] / d(input shift)."""
        g = self.element_gain
        return g.flatten(1).mean(1) if g.dim() > 1 else g

    @property
    def mse(self) -> float:
        return self.sq_sum / (self.count * self.error_sum.numel())

    def all_reduce(self) -> LayerStats:
        """The sums over every process's share of the calibration set, in one all-reduce (in place;
        a no-op in one process)."""
        if not dist.is_parallel():
            return self
        n = self.error_sum.numel()
        flat = torch.cat([self.error_sum.flatten().double(), self.linear_sum.flatten().double(),
                          self.error_sum.new_tensor([self.sq_sum, self.count], dtype=torch.float64)])
        flat = dist.all_reduce_sum(flat)
        self.error_sum = flat[:n].view_as(self.error_sum).to(self.error_sum.dtype)
        self.linear_sum = flat[n : 2 * n].view_as(self.linear_sum).to(self.linear_sum.dtype)
        self.sq_sum, self.count = float(flat[-2]), int(flat[-1])
        return self


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
        self.ann_input = sweep.run_ann(seg)
        self.target = self.neuron.relu(self.ann_input)
        self.synapses = synapses(sweep.gm, seg)
        self.bias_synapse = bias_synapse(sweep.gm, seg)
        self.info: dict[str, object] = {}
        self.first_stats: LayerStats | None = None
        self.finished = False
        self._stats: LayerStats | None = None
        self._currents: dict[int, tuple[Tensor, bool]] = {}  # minibatch -> (current, temporal)
        self._bias_shift: Tensor | None = None  # add_bias's change, not yet in the bias

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
        bit for bit, whether or not the currents fit in its memory budget. :meth:`Sweep.finish`
        puts it into the bias."""
        if self.bias_synapse is None:
            raise RuntimeError(f"{self.name}: no conv/linear adds directly into this neuron")
        shift = delta.to(self.target).view(-1, *([1] * (self.target.dim() - 2)))
        self._bias_shift = shift if self._bias_shift is None else self._bias_shift + shift
        for current, _ in self._currents.values():
            current.add_(shift)  # the same float op as a new current's ``+ shift``
        self._stats = None

    def _fold_bias_shift(self) -> None:
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
            self._sweep.budget[0] += current.numel() * current.element_size()
        self._currents.clear()

    def simulated_current(self, b: int, keep: bool = True) -> tuple[Tensor, bool]:
        """The neuron's input current in the simulation for minibatch ``b``: ``(current,
        temporal)``, time folded into the batch when temporal. Computed once and kept while the
        sweep's memory budget allows (``keep``); not to be changed in place."""
        sweep = self._sweep
        if b in self._currents:
            if keep:
                return self._currents[b]
            current, temporal = self._currents.pop(b)
            sweep.budget[0] += current.numel() * current.element_size()
            return current, temporal
        current, temporal = sweep.run_segment(self.segment, *sweep.snn_inputs(self.segment, b))
        if self._bias_shift is not None:
            current = current + self._bias_shift
        nbytes = current.numel() * current.element_size()
        if keep and nbytes <= sweep.budget[0]:
            if _shares_memory(current, sweep.images):  # kept currents are shifted in place
                current = current.clone()
            sweep.budget[0] -= nbytes
            self._currents[b] = (current, temporal)
        return current, temporal

    def stats(self) -> LayerStats:
        """Error statistics of this layer's rate against :attr:`target`, simulated over the
        calibration set on the stored spike trains of the layers before it (cached until
        :meth:`changed`)."""
        if self._stats is None:
            self._stats = self._sweep.simulate(self, store=False)
            self.first_stats = self.first_stats or self._stats
        return self._stats

    def input_rates(self) -> dict[fx.Node, Tensor]:
        """The segment's inputs as rates (time averages of the spike trains, times ``Vth``) on
        the whole calibration set; the input image as it is."""
        return self._sweep.rates(self.segment.inputs)

    def current(self, values: dict[fx.Node, Tensor], temporal: frozenset = frozenset()) -> Tensor:
        """The neuron's input current from the segment's input ``values`` (differentiable)."""
        current = self._sweep.run_segment(self.segment, values, temporal)[0]
        return current if self._bias_shift is None else current + self._bias_shift

    def rate(self) -> Tensor | None:
        """Once the sweep finished this layer: its rate (time average of its spike trains, times
        ``Vth``) on the whole calibration set; ``None`` if no later layer reads it (not stored)."""
        node = self.segment.neuron
        return self._sweep.rate(node) if node in self._sweep.spikes else None

    def spike_inputs(self) -> Iterator[tuple[dict[fx.Node, Tensor], frozenset]]:
        """The segment's inputs as the simulation sees them, one minibatch at a time:
        ``(values, temporal)`` for :meth:`current` (time folded into the batch)."""
        for b in range(len(self._sweep.slices)):
            yield self._sweep.snn_inputs(self.segment, b)

    @torch.no_grad()
    def currents(self) -> Iterator[tuple[slice, Tensor]]:
        """The neuron's input current in the simulation, one minibatch at a time: ``(index,
        current)``, the minibatch's slice of :attr:`target` and ``[T, B, ...]`` (a constant
        current is expanded, not copied)."""
        for b, index in enumerate(self._sweep.slices):
            current, temporal = self.simulated_current(b)
            if temporal:
                yield index, current.view(self.T, -1, *current.shape[1:])
            else:
                yield index, current.expand(self.T, *current.shape)

    def simulation(self) -> Iterator[tuple[slice, Tensor, Tensor]]:
        """This layer simulated as it stands, one minibatch at a time: ``(index, current,
        output)`` as :meth:`currents`, with the output (spikes times ``Vth``) ``[T, B, ...]``."""
        for index, x in self.currents():
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

    def rates(self, nodes: list[fx.Node]) -> dict[fx.Node, Tensor]:
        """Held values as rates on the whole calibration set (see :meth:`input_rates`)."""
        return self._sweep.rates(nodes)

    def restore(self) -> LayerStats:
        """Simulate a finished layer again after a later step changed it (e.g. the weights of a
        :meth:`block`) and replace its stored spike trains; returns its new statistics."""
        if not self.finished:
            raise RuntimeError(f"{self.name}: restore() is for finished layers; use changed()")
        sweep = self._sweep
        sweep.spikes.pop(self.segment.neuron).free()
        self._stats = sweep.simulate(self, store=True)
        if sweep.active is not None:  # its input changed: its kept currents are stale
            sweep.active.drop_currents()
        return self._stats


class Sweep:
    """Walks the spiking graph once, holding the calibration set's values between layers.

    Args:
        gm: the spiking graph.
        images: the calibration images ``[N, ...]``.
        T: the simulation length calibrated for.
        simulate: whether to simulate each layer and store its spike trains (steps that need the
            SNN); without, only the ANN is run.
        max_batch: the largest time-folded batch ``T * images`` of a simulated minibatch
            (``None``: :data:`CPU_SWEEP_BATCH` off CUDA, else
            :func:`~snncal.core.engine.auto_max_batch` of the images' device).
        ann_batch: images per ANN segment run (``None``: all at once).
        cache_bytes: memory for the spike trains (beyond it they are spilled to ``spill_dir``),
            then for the input currents of the layer being calibrated (computed again beyond it).
        seed: seeds :attr:`generator` (plus the rank under ``torch.distributed``, so that each
            process draws its own random numbers).
    """

    def __init__(
        self,
        gm: fx.GraphModule,
        images: Tensor,
        T: int,
        *,
        simulate: bool = True,
        max_batch: int | None = None,
        ann_batch: int | None = None,
        encoding: str = "direct",
        cache_bytes: int = 4 << 30,
        seed: int = 0,
        spill_dir: str | Path | None = None,
    ) -> None:
        self.gm, self.images, self.T, self.encoding = gm, images, T, encoding
        self.simulating, self.ann_batch = simulate, ann_batch or len(images)
        if max_batch is None:
            cuda = images.device.type == "cuda"
            max_batch = auto_max_batch(images.device) if cuda else CPU_SWEEP_BATCH
        self.batch = max(1, min(len(images), max_batch // T))
        self.slices = [slice(i, i + self.batch) for i in range(0, len(images), self.batch)]
        self.segments = segments(gm)
        self.ann: dict[fx.Node, Tensor] = {}
        self.spikes: dict[fx.Node, SpikeStore] = {}
        self.budget = [cache_bytes]
        self._spill_root, self._spill = spill_dir, None
        self.generator = torch.Generator(device=images.device).manual_seed(seed + dist.rank())
        self.node_runs = 0
        readers = [inp for seg in self.segments for inp in seg.inputs]
        self.readers_left = {n: readers.count(n) for n in set(readers)}
        self.placeholder = next(n for n in gm.graph.nodes if n.op == "placeholder")
        self.ann[self.placeholder] = images
        self.held: dict[fx.Node, Layer] = {}  # finished layers whose spike trains are stored
        self.order = {n: i for i, n in enumerate(gm.graph.nodes)}
        self.active: Layer | None = None  # the layer being calibrated

    def layers(self) -> Iterator[Layer]:
        """Each layer in graph order. When the caller asks for the next one, the layer is
        finished (:meth:`finish`) and the values no later layer reads are freed."""
        for seg in self.segments:
            layer = self.active = Layer(self, seg)
            yield layer
            self.finish(layer)
            self._done_with(seg)

    def finish(self, layer: Layer) -> LayerStats | None:
        """Keep ``layer``'s ANN output and, when simulating, its spike trains for the layers that
        read them; returns its final error statistics (``None`` without simulation). Once only."""
        if layer.finished:
            return layer._stats
        layer.finished = True
        self.ann[layer.segment.neuron] = layer.target
        if self.simulating:
            store = self.readers_left.get(layer.segment.neuron, 0) > 0
            if store or layer._stats is None:
                layer._stats = self.simulate(layer, store=store)
                layer.first_stats = layer.first_stats or layer._stats
            layer.drop_currents()
            if store:
                self.held[layer.segment.neuron] = layer
        layer._fold_bias_shift()  # after the last simulation, which added it to the current
        return layer._stats

    # -- running a segment --------------------------------------------------------------------
    def run_segment(
        self, seg: Segment, values: dict[fx.Node, Tensor], temporal: frozenset = frozenset()
    ) -> tuple[Tensor, bool]:
        """Input current of ``seg``'s neuron from its input ``values``; returns (current, temporal)."""
        env, temporal = run_nodes(self.gm, seg.nodes, values, steps=self.T if temporal else 1,
                                  T=self.T, temporal=temporal)
        self.node_runs += len(seg.nodes)
        return env[seg.current], seg.current in temporal

    @torch.no_grad()
    def run_ann(self, seg: Segment) -> Tensor:
        """The ANN's pre-activation of ``seg``'s neuron on the whole calibration set."""
        n = len(self.images)
        parts = [
            self.run_segment(seg, {i: self.ann[i][b : b + self.ann_batch] for i in seg.inputs})[0]
            for b in range(0, n, self.ann_batch)
        ]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def rate(self, node: fx.Node) -> Tensor:
        """A stored neuron's rate (time average of its spike trains, times ``Vth``) on the whole set."""
        th = self.gm.get_submodule(node.target).threshold
        store, dev = self.spikes[node], self.images.device
        return torch.cat([_as_float(store.load(b, dev)).mean(0) for b in range(len(self.slices))]) * th

    def rates(self, nodes: list[fx.Node]) -> dict[fx.Node, Tensor]:
        """Stored values as rates (time averages of the spike trains) for the whole set; the
        input image as it is."""
        return {n: self.images if n is self.placeholder else self.rate(n) for n in nodes}

    def snn_inputs(self, seg: Segment, b: int) -> tuple[dict[fx.Node, Tensor], frozenset]:
        """Segment inputs for minibatch ``b`` as the simulation sees them."""
        values, temporal = {}, set()
        for n in seg.inputs:
            if n is self.placeholder:
                x = self.images[self.slices[b]]
                if self.encoding != "direct":
                    x = encode(x, self.encoding, 0, self.T, self.T, self.generator)
                    temporal.add(n)
                values[n] = x
            else:
                th = self.gm.get_submodule(n.target).threshold
                s = self.spikes[n].load(b, self.images.device)
                values[n] = _as_float(s).mul_(th).flatten(0, 1)
                temporal.add(n)
        return values, frozenset(temporal)

    @torch.no_grad()
    def simulate(self, layer: Layer, store: bool) -> LayerStats:
        """Run ``layer``'s segment and neuron for ``T`` steps over the calibration set; error
        statistics against its target (summed over every process's share). With ``store`` (the
        layer's last simulation), its spike trains are kept for its readers, and its kept input
        currents are given up as they are read."""
        seg, neuron, target = layer.segment, layer.neuron, layer.target
        zeros = torch.zeros(target.shape[1:], device=target.device)
        stats = LayerStats(zeros, zeros.clone(), 0.0, 0)
        sq_sum = torch.zeros((), dtype=torch.float64, device=target.device)  # no host sync per minibatch
        if store:
            self.spikes[seg.neuron] = SpikeStore(self.budget, self._spill_dir)
        for b, index in enumerate(self.slices):
            current, temporal = layer.simulated_current(b, keep=not store)
            x = current.view(self.T, -1, *current.shape[1:]) if temporal else current
            count, v, spikes = neuron.count(x, neuron.init_state(x[0] if temporal else x),
                                            self.T, store)
            rate = count * (neuron.threshold / self.T)
            err = rate - target[index]
            # mean input current + v(0)/T, from the final potential: sum(x) = v(T) - v(0) + Vth * count
            drive = v / self.T + rate
            linear = (drive > 0) & (drive < neuron.threshold)
            stats.error_sum += err.sum(0)
            stats.linear_sum += linear.sum(0)
            sq_sum += (err**2).sum()
            stats.count += err.shape[0]
            if store:
                self.spikes[seg.neuron].append(spikes)
        stats.sq_sum = float(sq_sum)
        return stats.all_reduce()

    def _done_with(self, seg: Segment) -> None:
        """Free the stored values nobody reads any more."""
        for n in seg.inputs:
            self.readers_left[n] -= 1
            if self.readers_left[n] == 0:
                self.ann.pop(n, None)
                self.held.pop(n, None)
                if n in self.spikes:
                    self.spikes.pop(n).free()

    def close(self) -> None:
        """Free every stored value and the spill folder."""
        for store in self.spikes.values():
            store.free()
        self.spikes.clear()
        self.held.clear()
        if self._spill is not None:
            shutil.rmtree(self._spill, ignore_errors=True)

    def _spill_dir(self) -> str:
        """The folder for spike trains beyond ``cache_bytes``, made when first needed."""
        if self._spill is None:
            self._spill = spill_folder(self._spill_root)
        return str(self._spill)

    def __enter__(self) -> Sweep:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class LayerReport:
    """Calibration of one neuron: errors of its rate against the ANN, before and after."""

    name: str
    mse_before: float
    mse_after: float
    mean_error_before: float  # mean |channel-wise mean error|
    mean_error_after: float
    weight_loss: tuple[float, float] | None = None  # weight calibration loss before / after
    seconds: float = 0.0


@dataclass
class CalibrationReport:
    """What a calibration did, layer by layer; plain data for results files."""

    method: str
    steps: tuple[str, ...]
    T: int
    num_images: int
    layers: list[LayerReport] = field(default_factory=list)
    seconds: float = 0.0
    node_runs: int = 0  # segment-node executions, to check cost is linear in depth
    extra: dict = field(default_factory=dict)  # what network steps report (e.g. hybrid's losses)
