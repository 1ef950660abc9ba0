"""The threshold shift of Deng & Gu (ICLR 2021): ``Vth / 2T`` more input current at every step.

Over ``T`` steps the shift adds ``Vth / 2`` to the membrane, so a constant input ``x`` fires
``clip(floor(x T / Vth + 1/2), 0, T)`` times: ClipFloor becomes a rounding, which halves the mean
quantisation error. With reset by subtraction it ends in the same spike count as an initial
potential of ``Vth / 2``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = [
    "threshold_shift",
]

if TYPE_CHECKING:
    from snncal.core.calibrate.layer import Layer
    from snncal.core.config import ConvertConfig


def threshold_shift(layer: Layer, cfg: ConvertConfig) -> None:
    """Turn the shift on for ``layer``'s neuron."""
    layer.neuron.shift = True
    layer.changed(neuron_only=True)
