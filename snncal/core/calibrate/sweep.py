"""One sequential sweep over the spiking graph: it yields each layer once, in graph order.

A *layer* is one IF neuron together with its *segment*: the linear ops (conv, add, pad, pool, ...)
between the outputs of earlier neurons (or the input) and this neuron's input current. For every
layer the sweep computes the ANN input once, hands the :class:`Layer` to the calibration steps,
then simulates the calibrated layer on the already calibrated spike trains of the layers before it
and stores its spike trains (bit-packed) for the layers after it. Stored values are freed after
their last reader, so the cost is linear in depth and memory is bounded by the widest set of live
layers. A sweep whose steps need no spike trains (thresholds from the ANN alone) simulates nothing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, fx

from snncal.core import distributed as dist
from snncal.core.calibrate.layer import Layer
from snncal.core.calibrate.reports import LayerStats
from snncal.core.calibrate.segments import Segment, segments
from snncal.core.calibrate.store import MemoryBudget, SpikeStore, spill_folder
from snncal.core.calibrate.sums import ExactSum, all_reduce_exact
from snncal.core.device import auto_max_batch
from snncal.core.encoding import encode_input
from snncal.core.engine import run_nodes

__all__ = ["CPU_SWEEP_BATCH", "Sweep"]

# The sweep's time-folded batch off CUDA. Its neuron runs see all T steps of a minibatch at once;
# at the engine's CPU default (64: 2 images at T = 32) their element-wise ops are too small to use
# two cores, and 256 made ResNet-20's light pipeline 22 % faster on 2 threads, no slower on one.
CPU_SWEEP_BATCH = 256

# The fewest rows (images x steps) a segment runs on. A CPU's conv and linear kernels give each
# image the same bits in any batch of at least this many (measured with oneDNN / MKL, 1 and 2
# threads: a conv of 1 image, a GEMM of under 12 rows not a multiple of 4, round differently), so
# the calibration values do not depend on where a minibatch or a process's share ends.
MIN_ROWS = 16


def _as_float(spikes: Tensor) -> Tensor:
    """Bool -> float32, through uint8 (several times faster than a direct bool cast on CPU)."""
    return spikes.view(torch.uint8).to(torch.float32)


def _pad(x: Tensor, pad: int, steps: int) -> Tensor:
    """``x`` ``[steps * n, ...]`` (time folded) with ``pad`` copies of its last image per step."""
    x = x.unflatten(0, (steps, -1))
    return torch.cat([x, x[:, -1:].expand(-1, pad, *x.shape[2:])], 1).flatten(0, 1)


class Sweep:
    """Walks the spiking graph once, holding the calibration set's values between layers.

    Args:
        gm: the spiking graph.
        images: the calibration images ``[N, ...]``.
        T: the simulation length calibrated for.
        spiking: whether to simulate each layer and store its spike trains (steps that need the
            SNN); without, only the ANN is run.
        max_batch: the largest time-folded batch ``T * images`` of a simulated minibatch
            (``None``: :data:`CPU_SWEEP_BATCH` off CUDA, else
            :func:`~snncal.core.device.auto_max_batch` of the images' device).
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
        spiking: bool = True,
        max_batch: int | None = None,
        ann_batch: int | None = None,
        encoding: str = "direct",
        cache_bytes: int = 4 << 30,
        seed: int = 0,
        spill_dir: str | Path | None = None,
    ) -> None:
        self.gm, self.images, self.T, self.encoding = gm, images, T, encoding
        self.num_images = int(dist.sum_scalars(len(images))[0])  # over every process's share
        self.spiking, self.ann_batch = spiking, ann_batch or len(images)
        if max_batch is None:
            max_batch = auto_max_batch(images.device, cpu=CPU_SWEEP_BATCH)
        self.batch = max(1, min(len(images), max_batch // T))
        self.slices = [slice(i, i + self.batch) for i in range(0, len(images), self.batch)]
        self.segments = segments(gm)
        self.ann: dict[fx.Node, Tensor] = {}
        self.spikes: dict[fx.Node, SpikeStore] = {}
        self.budget = MemoryBudget(cache_bytes)
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
            return layer.last_stats
        layer.finished = True
        self.ann[layer.segment.neuron] = layer.target
        if self.spiking:
            store = self.readers_left.get(layer.segment.neuron, 0) > 0
            if store or layer.last_stats is None:
                layer.measure(store=store)
            layer.drop_currents()
            if store:
                self.held[layer.segment.neuron] = layer
        layer.fold_bias()  # after the last simulation, which added it to the current
        return layer.last_stats

    # -- running a segment --------------------------------------------------------------------
    def run_segment(
        self, seg: Segment, values: dict[fx.Node, Tensor], temporal: frozenset = frozenset()
    ) -> tuple[Tensor, bool]:
        """Input current of ``seg``'s neuron from its input ``values``; returns (current, temporal).

        Fewer than :data:`MIN_ROWS` rows are padded with copies of the last image, whose outputs
        are dropped."""
        steps = self.T if temporal else 1
        n = min(len(v) // (steps if node in temporal else 1) for node, v in values.items())
        pad = -(-MIN_ROWS // steps) - n
        if pad > 0:
            values = {node: _pad(v, pad, steps if node in temporal else 1) for node, v in values.items()}
        env, temporal = run_nodes(self.gm, seg.nodes, values, steps=steps, T=self.T, temporal=temporal)
        self.node_runs += len(seg.nodes)
        current, is_temporal = env[seg.current], seg.current in temporal
        if pad > 0:
            rows = steps if is_temporal else 1
            current = current.unflatten(0, (rows, -1))[:, :n].flatten(0, 1)
        return current, is_temporal

    @torch.no_grad()
    def ann_input(self, seg: Segment) -> Tensor:
        """The ANN's pre-activation of ``seg``'s neuron on the whole calibration set."""
        n = len(self.images)
        parts = [
            self.run_segment(seg, {i: self.ann[i][b : b + self.ann_batch] for i in seg.inputs})[0]
            for b in range(0, n, self.ann_batch)
        ]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def rate_of(self, node: fx.Node) -> Tensor:
        """A stored neuron's rate (time average of its spike trains, times ``Vth``) on the whole set."""
        th = self.gm.get_submodule(node.target).threshold
        store, dev = self.spikes[node], self.images.device
        return torch.cat([_as_float(store.load(b, dev)).mean(0) for b in range(len(self.slices))]) * th

    def rates_of(self, nodes: list[fx.Node]) -> dict[fx.Node, Tensor]:
        """Stored values as rates (time averages of the spike trains) for the whole set; the
        input image as it is."""
        return {n: self.images if n is self.placeholder else self.rate_of(n) for n in nodes}

    def input_trains(self, seg: Segment, b: int) -> tuple[dict[fx.Node, Tensor], frozenset]:
        """Segment inputs for minibatch ``b`` as the simulation sees them."""
        values, temporal = {}, set()
        for n in seg.inputs:
            if n is self.placeholder:
                x = self.images[self.slices[b]]
                if self.encoding != "direct":
                    x = encode_input(x, self.encoding, 0, self.T, self.T, self.generator)
                    temporal.add(n)
                values[n] = x
            else:
                th = self.gm.get_submodule(n.target).threshold
                s = self.spikes[n].load(b, self.images.device)
                values[n] = _as_float(s).mul_(th).flatten(0, 1)
                temporal.add(n)
        return values, frozenset(temporal)

    @torch.no_grad()
    def measure(self, layer: Layer, store: bool) -> LayerStats:
        """Run ``layer``'s segment and neuron for ``T`` steps over the calibration set; error
        statistics against its target (summed over every process's share, exactly: the same bits
        for any ``max_batch`` and any split over processes). With ``store`` (the layer's last
        simulation), its spike trains are kept for its readers, and its kept input currents are
        given up as they are read."""
        seg, neuron, target = layer.segment, layer.neuron, layer.target
        # |rate - target| <= max(Vth, target): a rate is at most one spike of Vth per step
        bound = max(float(neuron.threshold.max()), layer.target_max)
        error, linear = ExactSum(bound, self.num_images), ExactSum(1.0, self.num_images)
        sq = ExactSum(bound**2, self.num_images * target[0].numel())
        if store:
            self.spikes[seg.neuron] = SpikeStore(self.budget, self._spill_dir)
        for b, index in enumerate(self.slices):
            current, temporal = layer.input_current(b, keep=not store)
            x = current.view(self.T, -1, *current.shape[1:]) if temporal else current
            count, v, spikes = neuron.count(x, neuron.init_state(x[0] if temporal else x),
                                            self.T, store)
            rate = count * (neuron.threshold / self.T)
            err = rate - target[index]
            # mean input current + v(0)/T, from the final potential: sum(x) = v(T) - v(0) + Vth * count
            drive = v / self.T + rate
            error.add(err, 0)
            linear.add((drive > 0) & (drive < neuron.threshold), 0)
            sq.add(err**2)
            if store:
                self.spikes[seg.neuron].append(spikes)
        all_reduce_exact(error, linear, sq)
        return LayerStats(error.value(torch.float32), linear.value(torch.float32),
                          float(sq.value()), self.num_images)

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
