"""Metrics of a network: accuracy of an ANN, or of an SNN at every T from one simulation per batch;
per-layer firing rates."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from snncal.core.engine import SpikingNetwork, simulate

__all__ = ["DEFAULT_TS", "LayerRate", "evaluate", "firing_rates", "input_batches"]

DEFAULT_TS = (16, 32, 64, 128, 256)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    T: Sequence[int] = DEFAULT_TS,
    *,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> dict:
    """Top-1 accuracy in percent: ``{"ann": acc}`` for an ANN, ``{T: acc, ...}`` for an SNN.

    An SNN is simulated once per batch for ``max(T)`` steps; the running averages give every
    smaller ``T`` of the list at no extra cost.
    """
    spiking = isinstance(model, SpikingNetwork)
    device = device or next(iter(model.buffers()), next(iter(model.parameters()), None)).device
    Ts = sorted(set(T)) if spiking else []
    correct = torch.zeros(len(Ts) if spiking else 1, dtype=torch.long)
    total = 0
    for x, y in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
        x, y = x.to(device), y.to(device)
        if spiking:
            steps = model.simulate(x, T=Ts[-1], every_step=True)  # [T, N, classes]
            pred = steps[torch.tensor(Ts, device=device) - 1].argmax(-1)
        else:
            pred = model.eval()(x).argmax(-1)[None]
        correct += (pred == y).sum(-1).cpu()
        total += len(y)
    acc = (100.0 * correct.double() / max(total, 1)).tolist()
    return dict(zip(Ts, acc, strict=True)) if spiking else {"ann": acc[0]}


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
                 spike_counts=counts)
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
