"""Accuracy of an ANN, or of an SNN at every T of a sweep from one simulation per batch."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from .simulate import SpikingNetwork

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
