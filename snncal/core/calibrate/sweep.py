"""One sequential sweep over the spiking graph: each layer is calibrated once, in graph order.

A *layer* is one IF neuron together with its *segment*: the linear ops (conv, add, pad, pool, ...)
between the outputs of earlier neurons (or the input) and this neuron's input current. For every
layer the sweep computes the ANN target once, runs the segment on the already calibrated spike trains
of the layers before it, applies the calibration steps, re-runs only this layer, and stores its spike
trains (bit-packed) for the layers after it. Stored values are freed after their last reader, so the
cost is linear in depth and memory is bounded by the widest set of live layers.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field

import torch
from torch import Tensor, fx, nn

from snncal.core.calibrate.store import SpikeStore
from snncal.core.engine import MAX_BATCH, _Chunk, poisson
from snncal.core.neuron import IFNeuron

log = logging.getLogger("snncal")


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


def is_neuron(gm: fx.GraphModule, node: fx.Node) -> bool:
    return node.op == "call_module" and isinstance(gm.get_submodule(node.target), IFNeuron)


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
    return [m for m in mods if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]


def bias_synapse(gm: fx.GraphModule, seg: Segment) -> nn.Module | None:
    """The conv/linear whose output channels add 1:1 into the neuron's input, if there is one.

    Followed back through additions only, so a bias change shifts the neuron's input exactly.
    """
    todo = [seg.current]
    while todo:
        n = todo.pop(0)
        if n.op == "call_module":
            mod = gm.get_submodule(n.target)
            if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                return mod
        if n in seg.nodes and n.op == "call_function" and getattr(n.target, "__name__", "") in (
            "add", "iadd"
        ):
            todo.extend(a for a in n.args if isinstance(a, fx.Node))
    return None


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


class Sweep:
    """Holds the calibration set's values while walking the graph once."""

    def __init__(
        self,
        gm: fx.GraphModule,
        images: Tensor,
        T: int,
        *,
        max_batch: int = MAX_BATCH,
        encoding: str = "direct",
        cache_bytes: int = 2 << 30,
        seed: int = 0,
    ) -> None:
        self.gm, self.images, self.T, self.encoding = gm, images, T, encoding
        self.batch = max(1, min(len(images), max_batch // T))
        self.slices = [slice(i, i + self.batch) for i in range(0, len(images), self.batch)]
        self.segments = segments(gm)
        self.ann: dict[fx.Node, Tensor] = {}
        self.spikes: dict[fx.Node, SpikeStore] = {}
        self.budget = [cache_bytes]
        self._tmp = tempfile.TemporaryDirectory(prefix="snncal-")
        self.generator = torch.Generator(device=images.device).manual_seed(seed)
        self.node_runs = 0
        readers = [inp for seg in self.segments for inp in seg.inputs]
        self.readers_left = {n: readers.count(n) for n in set(readers)}
        placeholder = next(n for n in gm.graph.nodes if n.op == "placeholder")
        self.ann[placeholder] = images
        self.placeholder = placeholder

    # -- running a segment --------------------------------------------------------------------
    def run_segment(self, seg: Segment, values: dict[fx.Node, Tensor], temporal: set) -> tuple:
        """Input current of ``seg``'s neuron from its input ``values``; returns (current, temporal)."""
        steps = self.T if temporal else 1
        eng = _Chunk(self.gm, steps, self.T, {}, {}, static_input=True)
        eng.env = dict(values)
        eng.temporal, eng.batched = set(temporal), set(values)
        for n in seg.nodes:
            eng.env[n] = eng.run_node(n)
            self.node_runs += 1
        node = seg.current
        return eng.env[node], node in eng.temporal

    def ann_input(self, seg: Segment) -> Tensor:
        """The ANN's pre-activation of ``seg``'s neuron on the whole calibration set."""
        values = {n: self.ann[n] for n in seg.inputs}
        with torch.no_grad():
            return self.run_segment(seg, values, set())[0]

    def rate(self, node: fx.Node) -> Tensor:
        """A stored neuron's rate (time average of its spike trains, times ``Vth``) on the whole set."""
        th = self.gm.get_submodule(node.target).threshold
        store, dev = self.spikes[node], self.images.device
        return torch.cat([_as_float(store.load(b, dev)).mean(0) for b in range(len(self.slices))]) * th

    def rates(self, seg: Segment) -> dict[fx.Node, Tensor]:
        """Segment inputs as rates (time averages of the spike trains) for the whole set."""
        return {n: self.images if n is self.placeholder else self.rate(n) for n in seg.inputs}

    def snn_inputs(self, seg: Segment, b: int) -> tuple[dict, set]:
        """Segment inputs for minibatch ``b`` as the simulation sees them."""
        values, temporal = {}, set()
        for n in seg.inputs:
            if n is self.placeholder:
                x = self.images[self.slices[b]]
                if self.encoding == "poisson":
                    x = poisson(x, self.T, self.generator)
                    temporal.add(n)
                values[n] = x
            else:
                th = self.gm.get_submodule(n.target).threshold
                s = self.spikes[n].load(b, self.images.device)
                values[n] = _as_float(s).mul_(th).flatten(0, 1)
                temporal.add(n)
        return values, temporal

    @torch.no_grad()
    def simulate_layer(self, seg: Segment, target: Tensor, store: bool = False) -> LayerStats:
        """Run ``seg`` and its neuron for ``T`` steps over the calibration set; error statistics.

        With ``store``, the neuron's spike trains are kept for the layers that read them.
        """
        neuron: IFNeuron = self.gm.get_submodule(seg.neuron.target)
        zeros = torch.zeros(target.shape[1:], device=target.device)
        stats = LayerStats(zeros, zeros.clone(), 0.0, 0)
        store = store and self.readers_left.get(seg.neuron, 0) > 0
        if store:
            self.spikes[seg.neuron] = SpikeStore(self.budget, self._tmp.name)
        for b, index in enumerate(self.slices):
            current, temporal = self.run_segment(seg, *self.snn_inputs(seg, b))
            x = current.view(self.T, -1, *current.shape[1:]) if temporal else current
            out, v = neuron.scan(x, neuron.init_state(x[0] if temporal else x), self.T, self.T)
            rate = out.mean(0)
            err = rate - target[index]
            # mean input current + v(0)/T, from the final potential: sum(x) = v(T) - v(0) + Vth * count
            drive = v / self.T + rate
            linear = (drive > 0) & (drive < neuron.threshold)
            stats.error_sum += err.sum(0)
            stats.linear_sum += linear.sum(0)
            stats.sq_sum += float((err**2).sum())
            stats.count += err.shape[0]
            if store:
                self.spikes[seg.neuron].append(out > 0)
        return stats

    def done_with(self, seg: Segment) -> None:
        """Free the stored values nobody reads any more."""
        for n in seg.inputs:
            self.readers_left[n] -= 1
            if self.readers_left[n] == 0:
                self.ann.pop(n, None)
                if n in self.spikes:
                    self.spikes.pop(n).free()

    def close(self) -> None:
        for store in self.spikes.values():
            store.free()
        self.spikes.clear()
        self._tmp.cleanup()

