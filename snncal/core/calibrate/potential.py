"""Potential correction (Li et al. 2021, Sec. 4.2): an element-wise initial membrane potential."""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = [
    "potential_correction",
]

if TYPE_CHECKING:
    from snncal.core.calibrate.layer import Layer
    from snncal.core.config import ConvertConfig


def potential_correction(layer: Layer, cfg: ConvertConfig) -> None:
    """``v(0) <- v(0) - T * E[rate_SNN - ReLU_ANN] / g`` element-wise.

    With reset by subtraction the rate is ``ClipFloor`` of ``x + v(0) / T``, so an initial potential
    of ``-T * error`` moves the rate of inputs in the linear range by ``-error``; ``g``, the fraction
    of inputs there, makes it a Newton step (the paper's correction is ``g = 1``). ``g`` is estimated
    per element from few samples, so it is clamped at 0.5: at most a doubled step.
    """
    stats, neuron = layer.error_stats(), layer.neuron
    step = stats.element_error / stats.element_gain.clamp_min(0.5)
    neuron.v0 = (neuron.v0 - layer.T * step).to(neuron.v0.dtype)
    layer.changed(neuron_only=True)
