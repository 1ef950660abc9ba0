"""Weight calibration (Li et al. 2021, Sec. 4.3): fit a layer's weights to the ANN through ClipFloor."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from snncal.core.calibrate.sweep import Layer
    from snncal.core.config import ConvertConfig


def clip_floor_ste(x: Tensor, threshold: Tensor, T: int, v0: Tensor) -> Tensor:
    """``ClipFloor`` whose floor passes gradients straight through."""
    z = (x * T + v0) / threshold
    z = z + (torch.floor(z) - z).detach()
    return z.clamp(0, T) * (threshold / T)


def weight_calibration(layer: Layer, cfg: ConvertConfig) -> None:
    """Minimise ``||ClipFloor(W r + b) - ReLU_ANN||^2`` over the weights of the layer's segment.

    ``r`` are the calibrated SNN rates of the segment's inputs (residual inputs included). Adam with
    a cosine schedule, ``cfg.weight_iters`` minibatches of ``cfg.weight_batch`` images; the loss
    before and after goes to ``layer.info["weight_loss"]``.
    """
    params = [p for m in layer.synapses for p in m.parameters()]
    rates, target, neuron = layer.input_rates(), layer.target, layer.neuron

    def loss(idx: Tensor) -> Tensor:
        current = layer.current({n: v[idx] for n, v in rates.items()})
        out = clip_floor_ste(current, neuron.threshold, cfg.T, neuron.v0)
        return ((out - target[idx]) ** 2).flatten(1).sum(1).mean()

    with torch.enable_grad():
        layer.info["weight_loss"] = fit(
            loss, params, len(target), iters=cfg.weight_iters, lr=cfg.weight_lr,
            batch=cfg.weight_batch, generator=layer.generator,
        )
    layer.changed()


def fit(
    loss_fn: Callable[[Tensor], Tensor],
    params: list[torch.nn.Parameter],
    num_images: int,
    *,
    iters: int,
    lr: float,
    batch: int,
    generator: torch.Generator,
) -> tuple[float, float]:
    """Minimise ``loss_fn(indices)`` over ``params`` with Adam and a cosine schedule.

    Returns the loss on all images before and after; if training did not lower it, the weights are
    put back.
    """
    if not params or iters <= 0:
        return math.nan, math.nan
    everything = torch.arange(num_images)

    def full_loss() -> float:
        with torch.no_grad():
            return sum(float(loss_fn(i)) * len(i) for i in everything.split(256)) / num_images

    before = full_loss()
    saved = copy.deepcopy([p.detach() for p in params])
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iters)
    for _ in range(iters):
        idx = torch.randint(num_images, (min(batch, num_images),), generator=generator)
        opt.zero_grad(set_to_none=True)
        loss_fn(idx).backward()
        opt.step()
        sched.step()
    after = full_loss()
    if after > before:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
        after = before
    return before, after
