"""Metrics of a network: accuracy of an ANN, or of an SNN at every T from one simulation per batch;
per-layer firing rates."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, IterableDataset
from tqdm.auto import tqdm

from snncal.core import distributed as dist
from snncal.core.engine import SpikingNetwork, simulate

__all__ = ["DEFAULT_TS", "LayerRate", "evaluate", "firing_rates", "input_batches"]

DEFAULT_TS = (16, 32, 64, 128, 256)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Iterable | Dataset,
    T: Sequence[int] = DEFAULT_TS,
    *,
    device: torch.device | str | None = None,
    progress: bool = False,
    batch_size: int = 128,
    num_workers: int = 0,
) -> dict:
    """Top-1 accuracy in percent: ``{"ann": acc}`` for an ANN, ``{T: acc, ...}`` for an SNN.

    An SNN is simulated once per batch for ``max(T)`` steps; the running averages give every
    smaller ``T`` of the list at no extra cost.

    Args:
        model: a :class:`SpikingNetwork` or an ANN.
        data: a loader (any iterable of ``(x, y)`` batches) or a map-style Dataset of ``(x, y)``
            items, read in batches of ``batch_size`` by ``num_workers`` workers.
        T: the simulation lengths to report (an SNN only).
        device: where to run (default: the model's).
        progress: show a progress bar.

    Under ``torch.distributed`` a loader is this rank's share of the test set, and a Dataset is
    split by the ranks into contiguous blocks (each item counted once, no padding); the counts
    are summed over ranks, so every rank returns the accuracy on the whole set.
    """
    spiking = isinstance(model, SpikingNetwork)
    device = torch.device(device or next(iter(model.buffers()), next(iter(model.parameters()), None)).device)
    loader = _loader(data, batch_size, num_workers, device)
    Ts = sorted(set(T)) if spiking else []
    steps_at = torch.tensor(Ts, device=device) - 1
    correct = torch.zeros(len(Ts) if spiking else 1, dtype=torch.long, device=device)  # no sync per batch
    total = 0
    for x, y in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if spiking:
            steps = model.simulate(x, T=Ts[-1], every_step=True)  # [T, N, classes]
            pred = steps[steps_at].argmax(-1)
        else:
            pred = model.eval()(x).argmax(-1)[None]
        correct += (pred == y).sum(-1)
        total += len(y)
    counts = dist.all_reduce_sum(torch.cat([correct, correct.new_tensor([total])])).cpu()
    correct, total = counts[:-1], int(counts[-1])
    acc = (100.0 * correct.double() / max(total, 1)).tolist()
    return dict(zip(Ts, acc, strict=True)) if spiking else {"ann": acc[0]}


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
    T = T or snn.T
    device = next(iter(snn.buffers())).device
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
