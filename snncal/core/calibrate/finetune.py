"""Hybrid training (Rathi, Srinivasan, Panda & Roy, ICLR 2020): conversion, then spike-based
back-propagation through time on the converted SNN, over a labelled training set.

The training set is given apart from the calibration images (``snncal.convert(train_data=...)``;
the command line passes the training split with its augmentation). As in the authors' code
(``snn.py``): the loss is the cross-entropy of the last layer's current summed over the ``T``
steps; gradients pass through each spike by the surrogate ``0.3 * max(0, 1 - |v / Vth - 1|) / Vth``
(:func:`snncal.core.neuron.surrogate_scan`); Adam with AMSGrad and weight decay 5e-4 trains every
conv/linear weight and bias, at ``cfg.hybrid_lr`` divided by :data:`LR_REDUCE` at 60, 80 and 90 %
of the epochs; thresholds stay fixed.

Under ``torch.distributed`` each rank trains on its own share of the training set: a minibatch is
every rank's part of ``hybrid_batch`` (in proportion to the shares), gradients are averaged weighted
by those parts, every rank takes as many steps, and the losses are over all shares.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from snncal.core import distributed as dist
from snncal.core.engine import simulate
from snncal.core.graph import SYNAPSES

__all__ = [
    "LR_MILESTONES",
    "LR_REDUCE",
    "hybrid_finetune",
]

if TYPE_CHECKING:
    from snncal.core.config import ConvertConfig
    from snncal.core.engine import SpikingNetwork

log = logging.getLogger("snncal")

LR_MILESTONES = (0.6, 0.8, 0.9)  # the authors' lr_interval: fractions of the epochs
LR_REDUCE = 5  # the authors' snn_script.py (their argparse default is 10)


def hybrid_finetune(snn: SpikingNetwork, train_data: Dataset | DataLoader | None,
                    cfg: ConvertConfig) -> dict:
    """``cfg.hybrid_epochs`` epochs over ``train_data`` (a Dataset or DataLoader of ``(x, y)``);
    returns the mean training loss of each epoch. ``hybrid_epochs=0`` skips the training.

    A Dataset is read in shuffled minibatches of ``cfg.hybrid_batch`` images at T <= 32 and
    proportionally fewer beyond (``hybrid_batch * 32 // T``, at least one): back-propagation
    through time keeps every step's activations, a bound of ``32 * hybrid_batch`` image-steps.
    ``cfg.hybrid_images`` shortens each epoch of a Dataset to that many images, drawn afresh. A
    DataLoader is read as it is, in its own minibatches.
    """
    if cfg.hybrid_epochs == 0:
        return {"hybrid_loss": []}
    if train_data is None:
        raise ValueError("hybrid fine-tuning trains on a labelled training set apart from the "
                         "calibration images: pass train_data, a Dataset or DataLoader of (x, y)")
    params = [p for m in snn.graph.modules() if isinstance(m, SYNAPSES) for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=cfg.hybrid_lr, weight_decay=5e-4, amsgrad=True)
    device = next(iter(params)).device
    gen = torch.Generator(device=device).manual_seed(cfg.seed + dist.rank())
    order = torch.Generator().manual_seed(cfg.seed + dist.rank())
    milestones = {int(f * cfg.hybrid_epochs) for f in LR_MILESTONES}
    losses = []
    for epoch in range(cfg.hybrid_epochs):
        if epoch in milestones and epoch > 0:
            for group in opt.param_groups:
                group["lr"] /= LR_REDUCE
        total = torch.zeros((), dtype=torch.float64, device=device)  # no host sync per step
        seen = 0
        for x, y in _epoch(train_data, cfg, order):
            x, y = x.to(device, torch.float32), y.to(device)
            opt.zero_grad(set_to_none=True)
            if len(x):
                with torch.enable_grad():
                    out = simulate(snn.graph, x, cfg.T, encoding=snn.encoding, max_batch=snn.max_batch,
                                   generator=gen)
                    loss = F.cross_entropy(out * cfg.T, y)  # the summed output, as the authors'
                    loss.backward()
                total += loss.detach().double() * len(x)
                seen += len(x)
            dist.average_gradients(params, len(x))
            opt.step()
        losses.append(_ratio(float(total), seen))
        log.info("hybrid fine-tuning epoch %d/%d: loss %.4f", epoch + 1, cfg.hybrid_epochs, losses[-1])
    dist.broadcast_module(snn)
    return {"hybrid_loss": losses}


def _epoch(data: Dataset | DataLoader, cfg: ConvertConfig, order: torch.Generator
           ) -> Iterator[tuple[Tensor, Tensor]]:
    """One epoch of ``(x, y)`` minibatches; under ``torch.distributed`` padded with empty ones to
    the same count on every rank."""
    if isinstance(data, DataLoader):
        if cfg.hybrid_images is not None:
            raise ValueError("hybrid_images draws from a Dataset; a DataLoader is read as it is: "
                             "give it a Subset, or pass the Dataset")
        batches: Iterator = iter(data)
        count = len(data)
    else:
        batch = max(1, cfg.hybrid_batch * 32 // max(cfg.T, 32))
        index = _minibatches(len(data), batch, order, cfg.hybrid_images)
        batches, count = (_stack([data[int(i)] for i in idx]) for idx in index), len(index)
    total = int(dist.all_reduce_max(torch.tensor(count)))
    empty = None
    for _ in range(count):
        x, y = next(batches)[:2]
        empty = (x[:0], y[:0])
        yield x, y
    for _ in range(total - count):
        yield empty if empty is not None else (torch.zeros(0), torch.zeros(0, dtype=torch.long))


def _stack(items: list) -> tuple[Tensor, Tensor]:
    return torch.stack([torch.as_tensor(x) for x, *_ in items]), torch.stack(
        [torch.as_tensor(y) for _, y, *_ in items])


def _minibatches(n: int, batch: int, gen: torch.Generator, images: int | None = None) -> list[Tensor]:
    """A shuffled epoch of ``n`` indices (the first ``images`` of all ranks' ``n`` when given) in
    minibatches of ``batch``; under ``torch.distributed`` this rank's share of both."""
    total = int(dist.sum_scalars(n)[0])
    size = max(1, round(batch * n / total))
    keep = n if images is None or images >= total else max(1, round(images * n / total))
    return list(torch.randperm(n, generator=gen)[:keep].split(size))


def _ratio(total: float, count: int) -> float:
    """``total / count`` over all ranks' sums."""
    total, count = dist.sum_scalars(total, count)
    return total / count
