"""Locally balanced thresholds (after "Inference-scale complexity in ANN-SNN conversion", CVPR 2025):
each layer's ``Vth`` fitted to the input current it actually receives in the SNN.

The ANN rules (``mmse``) choose ``Vth`` for the ANN's own pre-activations, as if the neuron were fed
their values as a constant current. In the sweep the neuron is fed the spike trains of the already
converted layers before it, whose errors and variation in time change what it fires. This step
searches, per channel, the threshold that minimises ``||rate_SNN(Vth) - ReLU_ANN||^2`` with the
neuron simulated on those recorded currents, over the candidates ``GRID * Vth`` around the
threshold the rule before it set (all candidates in one simulation, one more batch dimension).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from snncal.core.calibrate.sums import ExactSum, all_reduce_exact
from snncal.core.neuron import if_scan

if TYPE_CHECKING:
    from snncal.core.calibrate.layer import Layer
    from snncal.core.config import ConvertConfig

__all__ = ["GRID", "balanced_threshold", "candidate_errors"]

GRID = torch.linspace(0.6, 1.4, 17)  # candidate thresholds, relative to the current one


def candidate_errors(layer: Layer, candidates: Tensor) -> Tensor:
    """Sum over the calibration set of the squared rate error per candidate threshold and channel,
    ``[K, C]``, for ``candidates`` ``[K, *threshold.shape]``, the neuron simulated on its SNN input."""
    neuron, T = layer.neuron, layer.T
    ones = (1,) * (layer.target.dim() - candidates.dim() + 1)
    th = candidates.view(len(candidates), *ones, *candidates.shape[1:])  # [K, 1, ...] ~ [K, B, C, ...]
    bias = neuron.shift_current(T, th)
    if neuron.step_bias is not None:
        bias = bias + neuron.bias_at(0, T).unsqueeze(1)  # [T, 1, 1, ...]: per step, all candidates
    # exact sums over every process's share: the same bits for any max_batch and split
    bound = max(float(candidates.max()), layer.target_max) ** 2  # a rate is at most Vth
    total = ExactSum(bound, layer.num_images * layer.target[0, 0].numel())
    for index, current in layer.input_currents():
        v = torch.zeros(len(th), *current.shape[1:], device=current.device) + neuron.v0
        out, _ = if_scan(current.unsqueeze(1), v, th, T, neuron.reset, bias)
        err = (out.mean(0) - layer.target[index]) ** 2  # [K, B, C, ...]
        err = err.flatten(3) if err.dim() > 3 else err.unsqueeze(-1)
        total.add(err, (1, 3))
    all_reduce_exact(total)
    return total.value(torch.float32)


@torch.no_grad()
def balanced_threshold(layer: Layer, cfg: ConvertConfig) -> None:
    """``Vth`` per channel (or per layer, with one threshold) = the candidate of ``GRID * Vth``
    whose rate on the layer's SNN input current is closest to the ANN's output."""
    base = layer.neuron.threshold
    candidates = GRID.to(base).view(-1, *([1] * base.dim())) * base  # [K, *base.shape]
    errors = candidate_errors(layer, candidates)  # [K, C]
    if base.dim() == 0:
        layer.neuron.threshold = candidates[errors.sum(1).argmin()]
    else:
        best = errors.argmin(0)  # [C]
        flat = candidates.flatten(1)  # [K, C]
        layer.neuron.threshold = flat.gather(0, best[None])[0].view(base.shape)
    layer.changed(neuron_only=True)
