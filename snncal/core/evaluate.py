"""The evaluation layer: metrics of a network, as dataclasses.

Accuracy of an ANN, or of an SNN at every T of a list from one simulation per batch, with its
agreement and logit error against the ANN; per-layer firing rates (``snncal.stats`` adds synaptic
operations and energy).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, IterableDataset
from tqdm.auto import tqdm

from snncal.core import distributed as dist
from snncal.core.device import module_device
from snncal.core.encoding import expected_spikes
from snncal.core.engine import SpikingNetwork, simulate

__all__ = [
    "DEFAULT_TS",
    "Evaluation",
    "LayerError",
    "LayerRate",
    "SpikeCounts",
    "count_spikes",
    "evaluate",
    "firing_rates",
    "input_batches",
    "layer_errors",
]

DEFAULT_TS = (16, 32, 64, 128, 256)


@dataclass
class Evaluation:
    """What one evaluation measured on ``images`` test images (accuracies and agreement in %).

    Attributes:
        images: how many images were evaluated.
        snn: the SNN's top-1 accuracy at each T, from one simulation of the largest T.
        ann: the ANN's top-1 accuracy (given an ANN).
        agreement: at each T, how often the SNN predicts the class the ANN predicts.
        logit_mse: at each T, the mean over images of ``sum_k (SNN_k - ANN_k)^2``: it moves by far
            less than accuracy with float rounding, so it compares calibration settings best.
        ann_top5: the ANN's top-5 accuracy.
        ann_loss: the ANN's mean cross-entropy.
    """

    images: int
    snn: dict[int, float] = field(default_factory=dict)
    ann: float | None = None
    agreement: dict[int, float] = field(default_factory=dict)
    logit_mse: dict[int, float] = field(default_factory=dict)
    ann_top5: float | None = None
    ann_loss: float | None = None


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Iterable | Dataset,
    T: Sequence[int] = DEFAULT_TS,
    *,
    ann: nn.Module | None = None,
    device: torch.device | str | None = None,
    amp: bool = False,
    progress: bool = False,
    batch_size: int = 128,
    num_workers: int = 0,
) -> Evaluation:
    """Evaluate an SNN at every T of ``T`` (one simulation of the largest per batch), or an ANN.

    Args:
        model: a :class:`SpikingNetwork`, or an ANN (any classifier).
        data: a loader (any iterable of ``(x, y)`` batches) or a map-style Dataset of ``(x, y)``
            items, read in batches of ``batch_size`` by ``num_workers`` workers.
        T: simulation lengths of an SNN.
        ann: with an SNN, its ANN: its accuracy, and the SNN's agreement and logit error against it,
            on the same images.
        device: where to run (default: the model's).
        amp: bfloat16 autocast for an ANN (on CUDA).
        progress: a progress bar over batches.

    The models are put in eval mode for the evaluation and given back in the mode they came in.
    Under ``torch.distributed`` a loader is this rank's share of the test set, and a Dataset is
    split by the ranks into contiguous blocks (each item counted once, no padding); the sums are
    reduced over ranks, so every rank returns the figures of the whole set.
    """
    spiking = isinstance(model, SpikingNetwork)
    reference = ann if spiking else model
    device = torch.device(device) if device is not None else module_device(model)
    loader = _loader(data, batch_size, num_workers, device)
    Ts = sorted(set(T)) if spiking else []
    if any(not isinstance(t, int) or isinstance(t, bool) or t < 1 for t in Ts):
        raise ValueError(f"every T must be an integer >= 1, got {list(T)}")
    steps_at = torch.tensor(Ts, device=device, dtype=torch.long) - 1
    modes = [(m, m.training) for m in (model, reference) if m is not None]
    for m, _ in modes:
        m.eval()
    sums = _Counters(len(Ts), device)
    try:
        for x, y in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            sums.images.add_(len(y))
            ref = None
            if reference is not None:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    ref = reference(x).float()
                top = ref.topk(min(5, ref.shape[1]), 1).indices
                sums.ann.add_(torch.stack([(top[:, 0] == y).sum(), (top == y[:, None]).any(1).sum(),
                                          F.cross_entropy(ref, y, reduction="sum")]).double())
            if spiking:
                out = model.simulate(x, T=Ts[-1], every_step=True)[steps_at]  # [len(Ts), N, classes]
                pred = out.argmax(-1)
                sums.correct.add_((pred == y).sum(-1))
                if ref is not None:
                    sums.agreeing.add_((pred == ref.argmax(-1)).sum(-1))
                    sums.logit_se.add_(((out.double() - ref.double()) ** 2).sum((1, 2)))
    finally:
        for m, training in modes:
            m.train(training)
    sums = sums.reduced()
    total = int(sums.images)
    n = max(total, 1)
    result = Evaluation(total)
    if reference is not None:
        result.ann, result.ann_top5 = (100 * sums.ann[:2] / n).tolist()
        result.ann_loss = float(sums.ann[2] / n)
    if spiking:
        result.snn = dict(zip(Ts, (100 * sums.correct / n).tolist(), strict=True))
        if reference is not None:
            result.agreement = dict(zip(Ts, (100 * sums.agreeing / n).tolist(), strict=True))
            result.logit_mse = dict(zip(Ts, (sums.logit_se / n).tolist(), strict=True))
    return result


def _loader(data: Iterable | Dataset, batch_size: int, num_workers: int, device: torch.device) -> Iterable:
    """``data`` itself if it is a loader, else this rank's block of the Dataset in batches (in
    pinned memory when bound for a GPU, so that the copies overlap the simulation)."""
    if not isinstance(data, Dataset) or isinstance(data, IterableDataset) or not hasattr(data, "__len__"):
        return data
    return DataLoader(dist.shard(data), batch_size=batch_size, num_workers=num_workers,
                      pin_memory=device.type == "cuda")


class _Counters:
    """The counters of :func:`evaluate` in one float64 tensor (summed on the device, no sync per
    batch, one reduction over ranks at the end), by name: per T the SNN's ``correct``, ``agreeing``
    (with the ANN) and ``logit_se`` (squared logit error); the ANN's ``ann`` (top-1, top-5,
    cross-entropy); the ``images`` counted."""

    def __init__(self, k: int, device: torch.device, data: Tensor | None = None) -> None:
        self.k = k
        self.data = torch.zeros(3 * k + 4, dtype=torch.float64, device=device) if data is None else data
        self.correct, self.agreeing = self.data[:k], self.data[k : 2 * k]
        self.logit_se = self.data[2 * k : 3 * k]
        self.ann, self.images = self.data[3 * k : 3 * k + 3], self.data[3 * k + 3]

    def reduced(self) -> _Counters:
        """The sums over every rank, on the CPU."""
        data = dist.all_reduce_sum(self.data).cpu()
        return _Counters(self.k, data.device, data)


@dataclass
class LayerRate:
    """Activity of one IF layer, averaged over images and time steps.

    ``rate`` is spikes per neuron per time step (0 to 1); ``spikes_per_image`` counts the layer's
    spikes for one image over the whole simulation of ``T`` steps.
    """

    name: str
    neurons: int  # per image
    rate: float
    spikes_per_image: float
    T: int


@dataclass
class SpikeCounts:
    """What one simulation loop over some images counted: per neuron, its spikes per element
    ``[C, ...]`` summed over images and steps (``counts``); the number of ``images``; ``T``; the
    expected input spikes per element under a spiking input encoding (``input_events``, 0.0 under
    direct encoding); and the first image ``[1, ...]`` on the network's device."""

    counts: dict[str, Tensor]
    images: int
    T: int
    input_events: Tensor | float
    first: Tensor

    def layer(self, name: str, neurons: int | None = None) -> LayerRate:
        """The :class:`LayerRate` of neuron ``name`` (``neurons`` per image: its count's size if
        not given)."""
        count = self.counts.get(name)
        n = (0 if count is None else count.numel()) if neurons is None else neurons
        total = 0.0 if count is None else float(count.sum())
        return LayerRate(name, n, total / max(1, n * self.images * self.T), total / self.images, self.T)


@torch.no_grad()
def count_spikes(
    snn: SpikingNetwork,
    data: Tensor | Iterable,
    T: int | None = None,
    max_images: int | None = None,
    *,
    amp: str | None = None,
    caller: str = "count_spikes",
) -> SpikeCounts:
    """Simulate ``snn`` on ``data`` for ``T`` steps (default ``snn.T``), counting every neuron's
    spikes: the one loop behind :func:`firing_rates` and :func:`snncal.stats`. ``amp`` overrides
    the network's autocast setting; ``caller`` names the function in the error raised on no images."""
    T = snn.T if T is None else T
    device = module_device(snn)
    counts: dict[str, Tensor] = {}
    events: Tensor | float = 0.0
    first, seen = None, 0
    for x in input_batches(data, max_images):
        x = x.to(device)
        first = x[:1] if first is None else first
        simulate(snn.graph, x, T, encoding=snn.encoding, max_batch=snn.max_batch,
                 spike_counts=counts, amp=snn.amp if amp is None else amp)
        if snn.encoding != "direct":
            events = events + expected_spikes(x, T)
        seen += len(x)
    if seen == 0:
        raise ValueError(f"{caller} got no images")
    return SpikeCounts(counts, seen, T, events, first)


def firing_rates(
    snn: SpikingNetwork,
    data: Tensor | Iterable,
    T: int | None = None,
    max_images: int | None = None,
) -> list[LayerRate]:
    """Mean firing rate of every IF layer of ``snn`` over ``data`` simulated for ``T`` steps.

    Args:
        snn: the spiking network.
        data: an input batch ``[N, ...]``, or an iterable of ``x`` or ``(x, y)`` batches.
        T: simulation length (default ``snn.T``).
        max_images: stop after this many images.

    Returns:
        One :class:`LayerRate` per neuron layer, in graph order.
    """
    spikes = count_spikes(snn, data, T, max_images, caller="firing_rates")
    return [spikes.layer(name) for name in snn.neurons()]


def input_batches(data: Tensor | Iterable, max_images: int | None = None) -> Iterator[Tensor]:
    """The input batches of ``data`` (a batch ``[N, ...]``, or an iterable of ``x`` or ``(x, y)``
    batches), cut so that they hold at most ``max_images`` images in all; labels are dropped."""
    seen = 0
    for item in [data] if isinstance(data, Tensor) else data:
        x = item[0] if isinstance(item, (tuple, list)) else item
        if max_images is not None:
            x = x[: max_images - seen]
        if len(x) == 0:
            return
        yield x
        seen += len(x)
        if max_images is not None and seen >= max_images:
            return


@dataclass
class LayerError:
    """How far one neuron's rate is from the ANN, as mean squared errors over images and elements.

    ``total``: the rate (times ``Vth``) against the ANN activation; ``input``: the ANN activation
    (``ReLU``, clipped for ReLU6) of the neuron's mean input current against it (what the layers
    before, and this layer's weights, leave); ``temporal``: the rate against ``ClipFloor`` of that
    mean current (what the spike trains' variation in time adds over a constant current);
    ``target``: the ANN activation's mean square; ``excess``: the temporal error's sign, the mean
    of the rate minus that ``ClipFloor`` (> 0: spikes fired early for charge that later inputs take
    back; < 0: charge that came too late to be fired, or was lost to a reset to zero).
    """

    name: str
    total: float
    input: float
    temporal: float
    target: float
    excess: float


@torch.no_grad()
def layer_errors(snn: SpikingNetwork, images: Tensor, reference: SpikingNetwork) -> list[LayerError]:
    """Where ``snn``'s error comes from, layer by layer, on ``images``: each neuron against the
    ANN that ``reference`` runs as (e.g. the uncalibrated conversion: the ANN before calibration
    changed the weights). Neurons that no later neuron reads (the last) are left out."""
    from snncal.core.calibrate import Sweep
    from snncal.core.neuron import clip_floor

    with Sweep(reference.graph, images, reference.T, spiking=False) as ann:
        targets = {layer.name: layer.target for layer in ann.layers()}
    rows = []
    with Sweep(snn.graph, images, snn.T, encoding=snn.encoding, max_batch=snn.max_batch) as sweep:
        for layer in sweep.layers():
            current = layer.current_from(layer.input_rates())
            sweep.finish(layer)
            rate, target, neuron = layer.output_rate(), targets[layer.name], layer.neuron
            if rate is None:
                continue
            floor = clip_floor(current, neuron.threshold, snn.T, neuron.v0)
            pairs = ((rate, target), (neuron.relu(current), target), (rate, floor), (target, 0.0))
            mse = [float(((a - b) ** 2).mean()) for a, b in pairs]
            rows.append(LayerError(layer.name, *mse, float((rate - floor).mean())))
    return rows
