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
from snncal.core.engine import SpikingNetwork, simulate

__all__ = [
    "DEFAULT_TS",
    "Evaluation",
    "LayerError",
    "LayerRate",
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
    device = torch.device(device) if device is not None else _device(model)
    loader = _loader(data, batch_size, num_workers, device)
    Ts = sorted(set(T)) if spiking else []
    if any(not isinstance(t, int) or isinstance(t, bool) or t < 1 for t in Ts):
        raise ValueError(f"every T must be an integer >= 1, got {list(T)}")
    steps_at = torch.tensor(Ts, device=device, dtype=torch.long) - 1
    modes = [(m, m.training) for m in (model, reference) if m is not None]
    for m, _ in modes:
        m.eval()
    # per T: correct, agreeing, squared logit error; then the ANN's top-1, top-5, cross-entropy and
    # the image count: summed on the device (no sync per batch), reduced over ranks at the end
    sums = torch.zeros(3 * len(Ts) + 4, dtype=torch.float64, device=device)
    try:
        for x, y in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            sums[-1] += len(y)
            ref = None
            if reference is not None:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    ref = reference(x).float()
                top = ref.topk(min(5, ref.shape[1]), 1).indices
                sums[-4:-1] += torch.stack([(top[:, 0] == y).sum(), (top == y[:, None]).any(1).sum(),
                                            F.cross_entropy(ref, y, reduction="sum")]).double()
            if spiking:
                out = model.simulate(x, T=Ts[-1], every_step=True)[steps_at]  # [len(Ts), N, classes]
                pred = out.argmax(-1)
                sums[: len(Ts)] += (pred == y).sum(-1)
                if ref is not None:
                    sums[len(Ts) : 2 * len(Ts)] += (pred == ref.argmax(-1)).sum(-1)
                    sums[2 * len(Ts) : 3 * len(Ts)] += ((out.double() - ref.double()) ** 2).sum((1, 2))
    finally:
        for m, training in modes:
            m.train(training)
    sums = dist.all_reduce_sum(sums).cpu()
    total = int(sums[-1])
    n = max(total, 1)
    result = Evaluation(total)
    if reference is not None:
        result.ann, result.ann_top5 = (100 * sums[-4:-2] / n).tolist()
        result.ann_loss = float(sums[-2] / n)
    if spiking:
        k = len(Ts)
        result.snn = dict(zip(Ts, (100 * sums[:k] / n).tolist(), strict=True))
        if reference is not None:
            result.agreement = dict(zip(Ts, (100 * sums[k : 2 * k] / n).tolist(), strict=True))
            result.logit_mse = dict(zip(Ts, (sums[2 * k : 3 * k] / n).tolist(), strict=True))
    return result


def _device(model: nn.Module) -> torch.device:
    first = next(iter(model.buffers()), next(iter(model.parameters()), None))
    return first.device if first is not None else torch.device("cpu")


def _loader(data: Iterable | Dataset, batch_size: int, num_workers: int, device: torch.device) -> Iterable:
    """``data`` itself if it is a loader, else this rank's block of the Dataset in batches (in
    pinned memory when bound for a GPU, so that the copies overlap the simulation)."""
    if not isinstance(data, Dataset) or isinstance(data, IterableDataset) or not hasattr(data, "__len__"):
        return data
    return DataLoader(dist.shard(data), batch_size=batch_size, num_workers=num_workers,
                      pin_memory=device.type == "cuda")


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


@torch.no_grad()
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
    T = snn.T if T is None else T
    device = _device(snn)
    counts: dict[str, Tensor] = {}
    seen = 0
    for x in input_batches(data, max_images):
        simulate(snn.graph, x.to(device), T, encoding=snn.encoding, max_batch=snn.max_batch,
                 spike_counts=counts, amp=snn.amp)
        seen += len(x)
    if seen == 0:
        raise ValueError("firing_rates got no images")
    rates = []
    for name in snn.neurons():
        n = counts[name].numel() if name in counts else 0
        total = float(counts[name].sum()) if name in counts else 0.0
        rates.append(LayerRate(name, n, total / max(1, n * seen * T), total / seen, T))
    return rates


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
    ``target``: the ANN activation's mean square.
    """

    name: str
    total: float
    input: float
    temporal: float
    target: float


@torch.no_grad()
def layer_errors(snn: SpikingNetwork, images: Tensor, reference: SpikingNetwork) -> list[LayerError]:
    """Where ``snn``'s error comes from, layer by layer, on ``images``: each neuron against the
    ANN that ``reference`` runs as (e.g. the uncalibrated conversion: the ANN before calibration
    changed the weights). Neurons that no later neuron reads (the last) are left out."""
    from snncal.core.calibrate import Sweep
    from snncal.core.neuron import clip_floor

    with Sweep(reference.graph, images, reference.T, simulate=False) as ann:
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
            rows.append(LayerError(layer.name, *mse))
    return rows
