"""One reconstruction routine (after BRECQ, Li et al., ICLR 2021, and AdaRound): fit the weights
of a block of layers so that the modelled rate of its last neuron matches the ANN.

The model of a neuron fed a constant current ``x`` is ``ClipFloor`` with the neuron's *effective*
initial potential (:meth:`~snncal.core.neuron.IFNeuron.effective_v0`: ``v0`` plus what the threshold
shift and a time-dependent bias add over ``T`` steps), so the weights are fitted to the neuron as it
will fire. Weight calibration (:mod:`~snncal.core.calibrate.weight`) is the block of one layer;
block reconstruction (:mod:`~snncal.core.calibrate.block`) adds the earlier layers whose inputs
the sweep still holds, each inner neuron modelled by its straight-through ``ClipFloor`` (BRECQ's
loss is the block output's alone). Inner layers are simulated again afterwards and their spike
trains replaced, so the rest of the sweep reads the new ones.

``ClipFloor`` of the mean current is what a neuron fires for a *constant* current; fed spike trains,
it fires a little differently (the temporal error, docs/results.md "Where the error comes from").
With ``spikes``, each image's difference between the rate the simulation gives and ``ClipFloor``
of its mean current is measured once before the fit and added to the model's output.

The loop reads top to bottom: cache the block's input rates and the target once, run ``iters``
minibatches with Adam and a cosine schedule, keep the weights only if the loss fell.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor, fx

from snncal.core import distributed as dist
from snncal.core.neuron import clip_floor

if TYPE_CHECKING:
    from snncal.core.calibrate.layer import Layer
    from snncal.core.config import ConvertConfig

__all__ = ["clip_floor_ste", "fit", "rate_model", "reconstruct", "temporal_offsets"]


def clip_floor_ste(x: Tensor, threshold: Tensor, T: int, v0: Tensor) -> Tensor:
    """``ClipFloor`` whose floor passes gradients straight through."""
    z = (x * T + v0) / threshold
    z = z + (torch.floor(z) - z).detach()
    return z.clamp(0, T) * (threshold / T)


def rate_model(layer: Layer, current: Tensor, straight_through: bool = True) -> Tensor:
    """The neuron's rate (times ``Vth``) for a constant ``current``: ``ClipFloor``, whose floor
    passes gradients straight through if asked."""
    rule = clip_floor_ste if straight_through else clip_floor
    return rule(current, layer.neuron.threshold, layer.T, layer.neuron.effective_v0(layer.T))


def _model_output(node: Layer, values: dict[fx.Node, Tensor], offsets: dict[Layer, Tensor] | None,
                  idx: Tensor) -> Tensor:
    """``node``'s modelled rate from its segment's input ``values`` (plus its temporal offset)."""
    out = rate_model(node, node.current_from(values))
    return out if offsets is None else out + offsets[node][idx]


def _forward(layer: Layer, inner: list[Layer], values: dict[fx.Node, Tensor],
             offsets: dict[Layer, Tensor] | None, idx: Tensor) -> Tensor:
    """``layer``'s modelled rate from the block's input ``values``, through the inner neurons."""
    values = dict(values)
    for node in inner:
        values[node.segment.neuron] = _model_output(node, values, offsets, idx)
    return _model_output(layer, values, offsets, idx)


@torch.no_grad()
def temporal_offsets(layer: Layer, inner: list[Layer]) -> dict[Layer, Tensor]:
    """Per layer of the block, each image's rate in the simulation minus ``ClipFloor`` of its mean
    input current: the stored rates for the inner layers, a simulation for ``layer``."""
    offsets = {}
    for node in inner:
        rates = layer.rates_of(node.segment.inputs)
        own = layer.rates_of([node.segment.neuron])[node.segment.neuron]
        offsets[node] = own - rate_model(node, node.current_from(rates), straight_through=False)
    delta = torch.empty_like(layer.target)
    for index, current, out in layer.responses():
        delta[index] = out.mean(0) - rate_model(layer, current.mean(0), straight_through=False)
    offsets[layer] = delta
    return offsets


def reconstruct(layer: Layer, cfg: ConvertConfig, inner: list[Layer], spikes: bool) -> None:
    """Minimise ``||model(r) - ReLU_ANN||^2`` over the weights of ``inner`` and ``layer``; ``r``
    are the calibrated SNN rates of the block's inputs. Adam as in weight calibration; the loss
    before and after goes to ``layer.info["weight_loss"]``, the block to ``layer.info["block"]``."""
    offsets = temporal_offsets(layer, inner) if spikes else None
    rates = layer.rates_of(layer.block_inputs(inner))
    params = list({id(p): p for node in [*inner, layer] for m in node.synapses
                   for p in m.parameters()}.values())
    target = layer.target

    def loss(idx: Tensor) -> Tensor:
        out = _forward(layer, inner, {n: v[idx] for n, v in rates.items()}, offsets, idx)
        return ((out - target[idx]) ** 2).flatten(1).sum(1).mean()

    with torch.enable_grad():
        layer.info["weight_loss"] = fit(
            loss, params, len(target), iters=cfg.weight_iters, lr=cfg.weight_lr,
            batch=cfg.weight_batch, generator=layer.generator,
        )
    if inner:
        layer.info["block"] = [node.name for node in inner]
    for node in inner:  # in graph order: each one reads the restored trains of those before it
        node.restore()
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
