"""Threshold rules as calibration steps: each sets one layer's ``Vth`` from a statistic.

ANN rules read the ANN's input to the activation on the calibration set (Rueckauer et al. 2017,
Li et al. 2021): ``max``, ``percentile`` and ``mmse``, the paper's
``argmin_Vth ||ReLU(x) - ClipFloor(x)||^2``; ``threshold`` is the rule the configuration names;
``ema_max`` is the running average of minibatch maxima of Li et al.'s code. SNN rules read the
input current the layer gets in the simulation, from the already converted layers before it
(Spike-Norm, ``snn_max``; RMP's rule lives in :mod:`snncal.core.calibrate.rmp`). The maths of each
statistic lives in :mod:`snncal.core.observers`.

Units. The sources' spikes are 0/1 and their weights those of the ANN; snncal's spikes have height
``Vth`` of the neuron that fires them. A layer whose inputs all come from neurons of threshold
``V_in`` therefore gets ``V_in`` times the sources' current, and a threshold of ``V_in * theta`` in
snncal gives the same spike trains as ``theta`` in the source (for bias-free layers): snncal's
``Vth`` of layer ``l`` is the product of the sources' thresholds up to ``l``. Setting it to the
largest current snncal sees is therefore the source's rule, with no more compounding than the
source has.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from snncal.core import distributed as dist
from snncal.core import observers as obs

__all__ = [
    "ema_max_threshold",
    "max_threshold",
    "mmse_threshold",
    "percentile_threshold",
    "set_threshold",
    "snn_max",
    "snn_max_07",
    "threshold",
]

if TYPE_CHECKING:
    from snncal.core.calibrate.layer import Layer
    from snncal.core.config import ConvertConfig


def set_threshold(layer: Layer, threshold: Tensor, max_val: Tensor) -> None:
    """Give ``layer``'s neuron ``threshold`` (scalar, or ``[C]`` broadcast over ``[N, C, ...]``);
    zeros (channels that never fire) become the layer's largest ``max_val`` (or 1)."""
    th = obs.finalize(threshold, max_val).float()
    if th.dim() == 1:
        th = th.view(-1, *([1] * (layer.target.dim() - 2)))
    layer.neuron.threshold = th.to(layer.target.device)
    layer.changed(neuron_only=True)


def _max_observer(layer: Layer, cfg: ConvertConfig) -> obs.MaxObserver:
    observer = obs.MaxObserver(cfg.per_channel, layer.neuron.ann_max)
    observer(layer.ann_input)
    return observer.all_reduce()


def _histogram(layer: Layer, cfg: ConvertConfig) -> obs.HistogramObserver:
    observer = obs.HistogramObserver(_max_observer(layer, cfg).max_val, cap=layer.neuron.ann_max)
    observer(layer.ann_input)
    return observer.all_reduce()


def max_threshold(layer: Layer, cfg: ConvertConfig) -> None:
    """``Vth`` = the largest ANN activation on the calibration set."""
    m = _max_observer(layer, cfg).max_val
    set_threshold(layer, m, m)


EMA_MOMENTUM = 0.9  # Li et al.'s code (get_maximum_activation(momentum=0.9))


@torch.no_grad()
def ema_max_threshold(layer: Layer, cfg: ConvertConfig) -> None:
    """``Vth`` = the running average of minibatch maxima, as Li et al.'s code computes the
    per-layer maximum for its ``opt`` baseline: over minibatches ``b = 0, 1, ...`` of
    ``cfg.batch_size`` calibration images, in order,

        m_0 = max(ReLU(x_0)),    m_b = 0.9 * m_(b-1) + 0.1 * max(ReLU(x_b)).

    One value per layer (or per channel if configured). Under ``torch.distributed`` each rank
    averages its own minibatches and the ranks' values are averaged, as the code's ``dist_avg``."""
    m = None
    for x in layer.target.split(cfg.batch_size):
        top = x.amax((0, *range(2, x.dim()))) if cfg.per_channel else x.max()
        m = top if m is None else EMA_MOMENTUM * m + (1 - EMA_MOMENTUM) * top
    m = dist.all_reduce_sum(m.clone()) / dist.world_size() if dist.is_parallel() else m
    set_threshold(layer, m, m)


def percentile_threshold(layer: Layer, cfg: ConvertConfig) -> None:
    """``Vth`` = the ``cfg.percentile``-th percentile of the positive ANN inputs."""
    h = _histogram(layer, cfg)
    set_threshold(layer, h.percentile(cfg.percentile), h.max_val)


def mmse_threshold(layer: Layer, cfg: ConvertConfig) -> None:
    """``Vth`` minimising ``||ReLU(x) - ClipFloor(x)||^2`` over the ANN inputs ``x`` at ``cfg.T``."""
    h = _histogram(layer, cfg)
    set_threshold(layer, h.mmse(cfg.T), h.max_val)


RULES = {"max": max_threshold, "percentile": percentile_threshold, "mmse": mmse_threshold}


def threshold(layer: Layer, cfg: ConvertConfig) -> None:
    """The ANN rule ``cfg.threshold`` names."""
    RULES[cfg.threshold](layer, cfg)


@torch.no_grad()
def snn_max(layer: Layer, cfg: ConvertConfig, scale: float = 1.0) -> None:
    """Spike-Norm (Sengupta et al. 2019, Algorithm 1): in graph order, ``Vth`` = ``scale`` x the
    largest input current the layer receives at any step, element and calibration image while the
    SNN is simulated with the layers before it already normalised,

        Vth^l = scale * max_(t, n, i) (W^l s^(l-1)_t)_(n, i),

    one value per layer (or per channel if configured). In a residual block, the neuron of the
    non-identity path whose spikes meet the block's input at a junction (``relu(conv2(s) + x)``)
    passes its input on at the scale of that input: its threshold is the block input's (unity
    in the source's units, so that both paths reach the junction at one scale); the junction's
    own neuron takes the maximum of the summed current."""
    partners = layer.junction_partners()
    if partners:
        top = torch.stack([p.threshold.max() for p in partners]).max()
        set_threshold(layer, top, top)
        return
    observer = obs.MaxObserver(cfg.per_channel, layer.neuron.ann_max)  # ReLU6: no rate above 6
    for values, temporal in layer.input_trains():
        observer(layer.current_from(values, temporal))
    top = observer.all_reduce().max_val * scale
    set_threshold(layer, top, top)


def snn_max_07(layer: Layer, cfg: ConvertConfig) -> None:
    """:func:`snn_max` scaled by 0.7, the conversion stage of Rathi et al.'s hybrid training."""
    snn_max(layer, cfg, scale=0.7)
