"""Bias correction (Li et al. 2021, Sec. 4.2): remove the channel-wise mean error of the SNN rate."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

__all__ = [
    "bias_correction",
]

if TYPE_CHECKING:
    from snncal.core.calibrate.layer import Layer
    from snncal.core.config import ConvertConfig

log = logging.getLogger("snncal")


def bias_correction(layer: Layer, cfg: ConvertConfig) -> None:
    """``b <- b - E[rate_SNN - ReLU_ANN] / g`` per channel, on the conv/linear feeding the neuron.

    A shift of the input current moves the rate by the same amount only for inputs in ClipFloor's
    linear range ``(0, Vth)``; ``g``, the fraction of inputs there, turns the paper's correction
    (``g = 1``) into a Newton step that cancels the channel's mean error on the calibration set.
    """
    synapse, stats = layer.bias_synapse, layer.error_stats()
    if synapse is None:
        log.warning("%s: bias correction skipped: no conv/linear adds directly into this neuron",
                    layer.name)
        return
    layer.add_bias(-stats.channel_error / stats.channel_gain.clamp_min(0.05))
