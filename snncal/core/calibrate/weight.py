"""Weight calibration (Li et al. 2021, Sec. 4.3): fit a layer's weights to the ANN through ClipFloor."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from snncal.core import distributed as dist

__all__ = [
    "clip_floor_ste",
    "fit",
    "weight_calibration",
]

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

    Under ``torch.distributed`` ``num_images`` is this rank's share: each rank draws its part of
    the minibatch (in proportion to its share), the gradients are averaged over all ranks weighted
    by those parts, the losses are over all shares, and rank 0's weights are broadcast at the end.
    """
    if not params or iters <= 0:
        return math.nan, math.nan
    everything = torch.arange(num_images)

    def full_loss() -> float:
        with torch.no_grad():
            total = sum(float(loss_fn(i)) * len(i) for i in everything.split(256))
        total, count = dist.sum_scalars(total, num_images)
        return total / count

    before = full_loss()
    saved = copy.deepcopy([p.detach() for p in params])
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iters)
    size = _minibatch(batch, num_images)
    for _ in range(iters):
        idx = torch.randint(num_images, (size,), generator=generator, device=generator.device)
        opt.zero_grad(set_to_none=True)
        loss_fn(idx).backward()
        dist.average_gradients(params, size)
        opt.step()
        sched.step()
    after = full_loss()
    if after > before:  # the same decision on every rank: the losses are all-reduced
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
        after = before
    dist.broadcast([p.data for p in params])  # float rounding must not part the ranks' weights
    return before, after


def _minibatch(batch: int, num_images: int) -> int:
    """This rank's part of a minibatch of ``batch`` images drawn from all ranks' images, in
    proportion to its ``num_images`` (``min(batch, num_images)`` in one process)."""
    if not dist.is_parallel():
        return min(batch, num_images)
    (total,) = dist.sum_scalars(num_images)
    return max(1, min(num_images, round(min(batch, total) * num_images / total)))
