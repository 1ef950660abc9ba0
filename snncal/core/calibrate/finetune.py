"""Hybrid training (Rathi, Srinivasan, Panda & Roy, ICLR 2020): conversion, then spike-based
back-propagation through time on the converted SNN.

The loss is the cross-entropy of the SNN's output (the last layer's current averaged over ``T``
steps) on the labelled calibration images; gradients pass through each spike by the surrogate
``0.3 * max(0, 1 - |v / Vth - 1|) / Vth`` (:func:`snncal.core.neuron.surrogate_scan`). Adam with
weight decay 5e-4 trains every conv/linear weight and bias; thresholds stay fixed, as in the paper.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from snncal.core.calibrate.sweep import SYNAPSES
from snncal.core.engine import simulate

if TYPE_CHECKING:
    from snncal.core.config import ConvertConfig
    from snncal.core.engine import SpikingNetwork

log = logging.getLogger("snncal")


def hybrid_finetune(snn: SpikingNetwork, images: Tensor, labels: Tensor | None, cfg: ConvertConfig) -> dict:
    """``cfg.hybrid_epochs`` epochs over ``images`` in minibatches of ``cfg.weight_batch``, Adam at
    ``cfg.hybrid_lr``; returns the mean training loss of each epoch (the first entry: before)."""
    if labels is None:
        raise ValueError("hybrid fine-tuning needs labels: give calib_data that yields (x, y), "
                         "e.g. a labelled Dataset or DataLoader")
    params = [p for m in snn.graph.modules() if isinstance(m, SYNAPSES) for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=cfg.hybrid_lr, weight_decay=5e-4)
    gen = torch.Generator(device=images.device).manual_seed(cfg.seed)
    losses = [_mean_loss(snn, images, labels, cfg, gen)]
    for epoch in range(cfg.hybrid_epochs):
        total = 0.0
        for idx in torch.randperm(len(images), generator=gen, device=images.device).split(cfg.weight_batch):
            with torch.enable_grad():
                loss = F.cross_entropy(_output(snn, images[idx], cfg, gen), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(images))
        log.info("hybrid fine-tuning epoch %d/%d: loss %.4f", epoch + 1, cfg.hybrid_epochs, losses[-1])
    return {"hybrid_loss": losses}


def _output(snn: SpikingNetwork, x: Tensor, cfg: ConvertConfig, gen: torch.Generator) -> Tensor:
    return simulate(snn.graph, x, cfg.T, encoding=snn.encoding, max_batch=snn.max_batch, generator=gen)


@torch.no_grad()
def _mean_loss(snn: SpikingNetwork, images: Tensor, labels: Tensor, cfg: ConvertConfig,
               gen: torch.Generator) -> float:
    total = sum(float(F.cross_entropy(_output(snn, x, cfg, gen), y, reduction="sum"))
                for x, y in zip(images.split(cfg.batch_size), labels.split(cfg.batch_size)))
    return total / len(images)
