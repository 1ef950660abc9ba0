"""Time-dependent bias correction (after FTBC, Wu et al., ECCV 2024): one bias per channel and
time step, so that the running rate tracks the ANN at every step, not only at ``T``.

Bias correction (:mod:`~snncal.core.calibrate.bias`) cancels each channel's mean error of the rate
over all ``T`` steps; the spike train it leaves may still fire too little early and too much late
(an IF neuron starting from rest is silent until its potential reaches ``Vth``), and the next
layer, which integrates that train, inherits the imbalance as temporal error. With a bias ``b_t``
added at step ``t``, the running rate after ``t`` steps, ``r_t = Vth * (spikes in 1..t) / t``,
moves by ``C_t / t`` for inputs in the linear range, where ``C_t = b_1 + ... + b_t`` is the
cumulative bias. A Newton step sets ``C_t <- C_t - t * E[r_t - y] / g`` per channel (``g``, the
fraction of inputs in the linear range, as in bias correction) and ``b_t = C_t - C_(t-1)``; a few
such steps, each one simulation of the layer, forward only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from snncal.core import distributed as dist

if TYPE_CHECKING:
    from snncal.core.calibrate.layer import Layer
    from snncal.core.config import ConvertConfig

__all__ = ["ITERATIONS", "running_error", "time_bias_correction"]

ITERATIONS = 3  # Newton steps (simulations of the layer)


def _channel_sum(x: Tensor, lead: int) -> Tensor:
    """Sum over the batch and the positions of ``x`` ``[*lead dims, B, C, ...]`` -> ``[*lead, C]``."""
    x = x.flatten(lead + 2) if x.dim() > lead + 2 else x.unsqueeze(-1)
    return x.sum((lead, lead + 2))


@torch.no_grad()
def running_error(layer: Layer) -> tuple[Tensor, Tensor]:
    """Per step and channel, the mean error of the running rate against the target ``[T, C]``,
    and per channel the fraction of inputs in the linear range ``0 < mean drive < Vth`` ``[C]``."""
    T, neuron = layer.T, layer.neuron
    steps = torch.arange(1, T + 1, device=layer.target.device).view(-1, *([1] * layer.target.dim()))
    v0 = neuron.effective_v0(T)
    error = linear = 0
    count = 0
    for index, current, out in layer.responses():
        running = out.cumsum(0) / steps
        error = error + _channel_sum(running - layer.target[index], 1)
        drive = current.mean(0) + v0 / T
        linear = linear + _channel_sum((drive > 0) & (drive < neuron.threshold), 0).float()
        count += out[0, :, 0].numel()
    # summed over every process's share of the calibration set (torchrun), like LayerStats
    error, linear = dist.all_reduce_sum(error), dist.all_reduce_sum(linear)
    (count,) = dist.sum_scalars(count)
    return error / count, linear / count


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
