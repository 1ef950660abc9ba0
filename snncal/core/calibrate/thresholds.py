"""Threshold rules as calibration steps: each sets one layer's ``Vth`` from a statistic.

ANN rules read the ANN's input to the activation on the calibration set (Rueckauer et al. 2017,
Li et al. 2021): ``max``, ``percentile`` and ``mmse``, the paper's
``argmin_Vth ||ReLU(x) - ClipFloor(x)||^2``; ``threshold`` is the rule the configuration names.
SNN rules read the input current the layer gets in the simulation, from the already converted
layers before it (Spike-Norm, ``snn_max``). The maths of each statistic lives in
:mod:`snncal.core.observers`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from snncal.core import observers as obs

__all__ = [
    "max_threshold",
    "mmse_threshold",
    "percentile_threshold",
    "set_threshold",
    "snn_max",
    "snn_max_07",
    "threshold",
]

if TYPE_CHECKING:
    from snncal.core.calibrate.sweep import Layer
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
    """Spike-Norm (Sengupta et al. 2019): ``Vth`` = ``scale`` x the largest input current the
    layer receives at any step while the SNN is simulated on the calibration images, with the
    layers before it already normalised. One value per layer, or per channel if configured."""
    observer = obs.MaxObserver(cfg.per_channel)
    for values, temporal in layer.spike_inputs():
        observer(layer.current(values, temporal))
    top = observer.all_reduce().max_val * scale
    set_threshold(layer, top, top)


def snn_max_07(layer: Layer, cfg: ConvertConfig) -> None:
    """:func:`snn_max` scaled by 0.7, the conversion stage of Rathi et al.'s hybrid training."""
    snn_max(layer, cfg, scale=0.7)
