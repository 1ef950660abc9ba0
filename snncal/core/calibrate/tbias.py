"""Time-dependent bias correction (after FTBC, Wu et al., ECCV 2024): one bias per channel and
time step, so that the running rate tracks the ANN at every step, not only at ``T``.

Bias correction (:mod:`~snncal.core.calibrate.bias`) cancels each channel's mean error of the rate
over all ``T`` steps; the spike train it leaves may still fire too little early and too much late
(an IF neuron starting from rest is silent until its potential reaches ``Vth``), and the next
layer, which integrates that train, inherits the imbalance as temporal error. With a bias ``b_t``
added at step ``t``, the running rate after ``t`` steps, ``r_t = Vth * (spikes in 1..t) / t``,
moves by ``C_t / t`` for inputs in the linear range, where ``C_t = b_1 + ... + b_t`` is the
cumulative bias. A Newton step sets ``C_t <- C_t - t * E[r_t - y] / g`` per channel (``g``, the
fraction of inputs in the linear range, as in bias correction) and ``b_t = C_t - C_(t-1)``; two
such steps, each one simulation of the layer, forward only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from snncal.core import distributed as dist
from snncal.core.calibrate.sums import ExactSum, all_reduce_exact

if TYPE_CHECKING:
    from snncal.core.calibrate.layer import Layer
    from snncal.core.config import ConvertConfig

__all__ = ["ITERATIONS", "running_error", "time_bias_correction"]

ITERATIONS = 2  # Newton steps (simulations of the layer)


def _by_channel(x: Tensor, lead: int) -> Tensor:
    """``x`` ``[*lead dims, B, C, ...]`` as ``[*lead, B, C, positions]``: sum it over
    ``(lead, lead + 2)`` for ``[*lead, C]``."""
    return x.flatten(lead + 2) if x.dim() > lead + 2 else x.unsqueeze(-1)


def _spikes_per_step(out: Tensor) -> Tensor:
    """The spikes of ``out`` ``[T, B, C, ...]`` (spikes times ``Vth`` > 0) per step and channel,
    summed over images and positions: int64 ``[T, C]``, exact (integer sums)."""
    return _by_channel(out > 0, 1).sum(3, dtype=torch.int32).sum(1, dtype=torch.int64)


@torch.no_grad()
def running_error(layer: Layer) -> tuple[Tensor, Tensor]:
    """Per step and channel, the mean error of the running rate against the target ``[T, C]``,
    and per channel the fraction of inputs in the linear range ``0 < mean drive < Vth`` ``[C]``.

    The running rate after ``t`` steps is ``Vth * (spikes in 1..t) / t``, so its sum is
    ``Vth / t`` times a sum of spike counts, integers; those and the targets are summed exactly
    over every process's share (:class:`~snncal.core.calibrate.sums.ExactSum`): the same bits for
    any ``max_batch`` and any split over processes."""
    T, neuron = layer.T, layer.neuron
    v0 = neuron.effective_v0(T)
    terms = layer.num_images * layer.target[0, 0].numel()  # images x positions per channel
    spikes, target = 0, ExactSum(layer.target_max, terms)
    linear = ExactSum(1.0, terms)
    for index, current, out in layer.responses():
        spikes = spikes + _spikes_per_step(out)
        target.add(_by_channel(layer.target[index], 0), (0, 2))
        drive = current.mean(0) + v0 / T
        linear.add(_by_channel((drive > 0) & (drive < neuron.threshold), 0), (0, 2))
    all_reduce_exact(target, linear)
    spikes = dist.all_reduce_sum(spikes)
    steps = torch.arange(1, T + 1, dtype=torch.float64, device=spikes.device).view(-1, 1)
    rate_sum = spikes.cumsum(0).double() * neuron.threshold.double().flatten() / steps  # [T, C]
    error = (rate_sum - target.value().to(rate_sum.device)) / terms
    return error.float(), linear.value(torch.float32) / terms


def time_bias_correction(layer: Layer, cfg: ConvertConfig) -> None:
    """``ITERATIONS`` Newton steps on the neuron's ``step_bias`` ``[T, C, 1, ...]`` that zero each
    channel's mean error of the running rate at every step (see the module docstring)."""
    neuron, T = layer.neuron, layer.T
    shape = (T, layer.target.shape[1], *([1] * (layer.target.dim() - 2)))
    if neuron.step_bias is None or neuron.step_bias.shape != shape:
        neuron.step_bias = torch.zeros(shape, device=layer.target.device)
    steps = torch.arange(1, T + 1, device=layer.target.device).view(-1, 1)
    for _ in range(ITERATIONS):
        error, gain = running_error(layer)
        cumulative = -steps * error / gain.clamp_min(0.05)  # [T, C]
        delta = torch.diff(cumulative, dim=0, prepend=torch.zeros_like(cumulative[:1]))
        neuron.step_bias = neuron.step_bias + delta.view(shape).to(neuron.step_bias)
    layer.changed(neuron_only=True)
