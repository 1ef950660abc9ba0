"""Hybrid training (Rathi, Srinivasan, Panda & Roy, ICLR 2020): conversion, then spike-based
back-propagation through time on the converted SNN.

The loss is the cross-entropy of the SNN's output (the last layer's current averaged over ``T``
steps) on the labelled calibration images; gradients pass through each spike by the surrogate
``0.3 * max(0, 1 - |v / Vth - 1|) / Vth`` (:func:`snncal.core.neuron.surrogate_scan`). Adam with
weight decay 5e-4 trains every conv/linear weight and bias; thresholds stay fixed, as in the paper.

Under ``torch.distributed`` each rank trains on its share of the images: a minibatch is every
rank's part (``weight_batch`` split in proportion to the shares), gradients are averaged weighted
by those parts, every rank takes as many steps, and the losses are over all shares.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from snncal.core import distributed as dist
from snncal.core.engine import simulate
from snncal.core.graph import SYNAPSES

__all__ = [
    "hybrid_finetune",
]

if TYPE_CHECKING:
    from snncal.core.config import ConvertConfig
    from snncal.core.engine import SpikingNetwork

log = logging.getLogger("snncal")


def hybrid_finetune(snn: SpikingNetwork, images: Tensor, labels: Tensor | None, cfg: ConvertConfig) -> dict:
    """``cfg.hybrid_epochs`` epochs over ``images``, Adam at ``cfg.hybrid_lr``; returns the mean
    training loss of each epoch (the first entry: before).

    Back-propagation through time keeps every step's activations, so memory grows with images x T:
    a minibatch holds ``cfg.weight_batch`` images at T <= 32 and proportionally fewer beyond
    (``weight_batch * 32 // T``, at least one), a bound of ``32 * weight_batch`` image-steps.
    """
    if labels is None:
        raise ValueError("hybrid fine-tuning needs labels: give calib_data that yields (x, y), "
                         "e.g. a labelled Dataset or DataLoader")
    params = [p for m in snn.graph.modules() if isinstance(m, SYNAPSES) for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=cfg.hybrid_lr, weight_decay=5e-4)
    gen = torch.Generator(device=images.device).manual_seed(cfg.seed + dist.rank())
    losses = [_mean_loss(snn, images, labels, cfg, gen)]
    for epoch in range(cfg.hybrid_epochs):
        total = torch.zeros((), dtype=torch.float64, device=images.device)  # no host sync per step
        batch = max(1, cfg.weight_batch * 32 // max(cfg.T, 32))
        for idx in _minibatches(len(images), batch, gen, images.device):
            opt.zero_grad(set_to_none=True)
            if len(idx):
                with torch.enable_grad():
                    loss = F.cross_entropy(_output(snn, images[idx], cfg, gen), labels[idx])
                    loss.backward()
                total += loss.detach().double() * len(idx)
            dist.average_gradients(params, len(idx))
            opt.step()
        losses.append(_ratio(float(total), len(images)))
        log.info("hybrid fine-tuning epoch %d/%d: loss %.4f", epoch + 1, cfg.hybrid_epochs, losses[-1])
    dist.broadcast_module(snn)
    return {"hybrid_loss": losses}


def _minibatches(n: int, batch: int, gen: torch.Generator, device: torch.device) -> list[Tensor]:
    """A shuffled epoch of ``n`` images in minibatches of ``batch``; under ``torch.distributed``
    of this rank's part of ``batch``, padded with empty minibatches to the same count on every rank."""
    total = int(dist.sum_scalars(n)[0])
    size = max(1, round(batch * n / total))
    order = torch.randperm(n, generator=gen, device=device).split(size)
    count = int(dist.all_reduce_max(torch.tensor(len(order))))
    return [*order, *[order[0][:0]] * (count - len(order))]


def _ratio(total: float, count: int) -> float:
    """``total / count`` over all ranks' sums."""
    total, count = dist.sum_scalars(total, count)
    return total / count


def _output(snn: SpikingNetwork, x: Tensor, cfg: ConvertConfig, gen: torch.Generator) -> Tensor:
    return simulate(snn.graph, x, cfg.T, encoding=snn.encoding, max_batch=snn.max_batch, generator=gen)


@torch.no_grad()
def _mean_loss(snn: SpikingNetwork, images: Tensor, labels: Tensor, cfg: ConvertConfig,
               gen: torch.Generator) -> float:
    total = sum(float(F.cross_entropy(_output(snn, x, cfg, gen), y, reduction="sum"))
                for x, y in zip(images.split(cfg.batch_size), labels.split(cfg.batch_size)))
    return _ratio(total, len(images))
